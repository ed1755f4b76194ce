"""The ratios of verify and the history, from the steps of a run (steps
built here: the figures are the benchmark's, the arithmetic is tested)."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.testing.bench.ratios import ratios
from ckanext.datagovuk.testing.bench.steps import Step


def ok(name: str, seconds: float, phases: dict | None = None,
       revisions: int | None = None, python_mb: float | None = None) -> Step:
    details = {}
    if phases:
        details["reported_phases"] = phases
    if revisions is not None:
        details["history"] = {"revisions": revisions, "datasets": 1,
                              "seconds": 0.0}
    memory = {"python": {"peak_mb": python_mb}} if python_mb else {}
    return Step(name, name, status="ok", seconds=seconds, details=details,
                memory=memory)


def run_steps(*steps: Step) -> dict[str, Step]:
    return {step.name: step for step in steps}


def test_verify_against_the_import_of_the_same_run():
    found = ratios(run_steps(ok("import.loopback", 40.0), ok("verify", 10.0),
                             ok("verify_all", 60.0)), 50000, 5000)
    assert found["verify_over_import"]["value"] == pytest.approx(0.25)
    assert found["verify_over_import"]["status"] == "pass"
    assert found["verify_all_over_import"]["value"] == pytest.approx(1.5)
    assert found["verify_all_over_import"]["target"] == "none"
    assert found["verify_all_over_import"]["status"] == "measured"
    assert ratios(run_steps(ok("import.loopback", 10.0), ok("verify", 4.0)),
                  50000, 5000)["verify_over_import"]["status"] == "miss"


def test_the_history_per_revision_at_both_scales_and_in_the_one_run():
    found = ratios(run_steps(
        ok("migrate_data", 90.0, {"history": 12.0}, 150000, python_mb=130.0),
        ok("migrate_data_5000", 9.0, {"history": 1.0}, 15000, python_mb=125.0),
        ok("migrate_upgrade", 90.0, {"history": 11.0}, 150000, python_mb=140.0),
        ok("migrate_upgrade_5000", 9.0, {"history": 1.0}, 15000,
           python_mb=100.0),
        ok("pipeline_one_run", 200.0, {"migrate": 60.0, "history": 30.0})),
        50000, 5000)
    # The migrate run that converts the history is migrate_data's.
    assert found["history_per_revision_linearity"]["value"] == \
        pytest.approx(1.2)
    assert found["history_per_revision_linearity"]["status"] == "pass"
    assert found["history_over_pipeline"]["value"] == pytest.approx(0.15)
    assert found["history_over_pipeline"]["status"] == "pass"
    # The larger growth of the two migrate runs.
    assert found["history_python_peak_rss_N_over_M"]["value"] == \
        pytest.approx(1.4)
    assert found["history_python_peak_rss_N_over_M"]["status"] == "miss"


def test_a_ratio_without_its_inputs_says_which_is_missing():
    skipped = Step("verify", "verify", reason="--stages")
    found = ratios(run_steps(ok("import.loopback", 40.0), skipped,
                             ok("migrate_data", 90.0, {"history": 12.0}),
                             ok("migrate_data_5000", 9.0, {"history": 1.0},
                                15000)), 50000, 5000)
    assert found["verify_over_import"]["status"] == \
        "not measured: verify: --stages"
    assert found["verify_all_over_import"]["status"] == \
        "not measured: verify_all: not run"
    assert found["history_per_revision_linearity"]["status"] == (
        "not measured: migrate_data: no history phase and revision count "
        "in its report")
    assert found["history_over_pipeline"]["status"] == \
        "not measured: pipeline_one_run: not run"
    found = ratios(run_steps(ok("pipeline_one_run", 100.0, {"migrate": 5.0})),
                   50000, 0)
    assert found["history_over_pipeline"]["status"] == (
        "not measured: pipeline_one_run: no history phase in its report")
    for key in ("history_per_revision_linearity",
                "history_python_peak_rss_N_over_M"):
        assert found[key]["status"] == "not measured: --compare-datasets 0"


def test_verify_counts_among_our_commands_memory():
    found = ratios(run_steps(
        ok("migrate_data", 90.0, python_mb=120.0),
        ok("migrate_data_5000", 9.0, python_mb=120.0),
        ok("verify", 80.0, python_mb=420.0),
        ok("verify_5000", 20.0, python_mb=150.0)), 50000, 5000)
    assert found["python_peak_rss_mb"]["value"] == pytest.approx(420.0)
    assert found["python_peak_rss_growth_N_over_M"]["value"] == \
        pytest.approx(2.8)
