"""One end-to-end run of the benchmark at a tiny scale (real PostgreSQL,
real sshd, our real commands).  Timing targets are the benchmark's
business, never asserted here."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from ckanext.datagovuk.testing.bench.cli import DEFAULT_ROUNDS
from ckanext.datagovuk.testing.bench.cluster import AUTOVACUUM_WAIT_LIMIT
from ckanext.datagovuk.testing.bench.ratios import RATIO_KEYS
from ckanext.datagovuk.testing.bench.steps import EXPECTED_STEPS, stages


def test_bench_runs_end_to_end_at_a_tiny_scale(tmp_path):
    output = tmp_path / "results"
    # The link is left out to keep this test short; test_remote checks the
    # ssh route through it, test_link the proxy's rate.
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.bench", "--datasets", "20",
         "--compare-datasets", "0", "--floor-variants", "ssh_fc_z0_stream",
         "--skip-slow-link", "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert (output / "results.txt").read_text().startswith(
        "ckanext-datagovuk migration benchmark")

    for key in ("date", "nproc", "memory_mb", "cpu", "postgresql"):
        assert results["machine"][key], key
    assert results["parameters"]["datasets"] == 20
    assert results["sizes"]["20"]["rows"]["package"] == 20

    steps = results["steps"]
    link_steps = ("floor_ssh.link", "manual.link", "import.link")
    for name in EXPECTED_STEPS:
        if name in link_steps:
            assert steps[name]["status"] == "not measured", name
            assert steps[name]["reason"] == "--skip-slow-link"
            continue
        assert steps[name]["status"] == "ok", (name, steps[name])
        assert steps[name]["seconds"] > 0, name
    # The selection pass copied once with the one variant given; the floor
    # is that variant timed in rounds, as the import and the manual route
    # are: three rounds (the default), each step counting their median.
    assert steps["floor.ssh_fc_z0_stream"]["status"] == "ok"
    assert "rounds" not in steps["floor.ssh_fc_z0_stream"].get("details", {})
    assert steps["floor_single_copy"]["details"]["best"] == \
        "floor.ssh_fc_z0_stream"
    assert steps["floor"]["details"]["variant"] == "floor.ssh_fc_z0_stream"
    nproc = results["machine"]["nproc"]
    for name in ("floor", "import.loopback", "manual.loopback", "verify"):
        details = steps[name]["details"]
        rounds = details["rounds"]
        assert len(rounds) == DEFAULT_ROUNDS == 3, name
        assert steps[name]["seconds"] == pytest.approx(statistics.median(rounds),
                                                       abs=0.001), name
        # The machine's busy CPU seconds, per round: some, and no more than
        # all its CPUs for the whole round.
        cpu_rounds = details["cpu_rounds"]
        assert len(cpu_rounds) == 3, name
        for seconds, cpu in zip(rounds, cpu_rounds):
            assert 0 < cpu <= seconds * nproc + 0.1, (name, seconds, cpu)
        assert steps[name]["cpu_seconds"] == pytest.approx(
            statistics.median(cpu_rounds), abs=0.01), name
    assert not [name for name in steps if "round" in name]
    text = (output / "results.txt").read_text()
    assert "[median of 3 rounds: " in text
    assert "cpu s: busy CPU seconds of the whole machine" in text
    # The manual route's first round is the sum of its four parts.
    parts = [steps[f"manual.loopback.{part}"]["seconds"]
             for part in ("dump", "scp", "createdb", "load")]
    assert steps["manual.loopback"]["details"]["rounds"][0] == pytest.approx(
        sum(parts), abs=0.01)
    # Our import is a Python process running pg_restore; the remote ran pg_dump.
    memory = steps["import.loopback"]["memory"]
    assert memory["python"]["peak_mb"] > 20
    assert "pg_restore" in memory["pg_client"]["programs"]
    assert "pg_dump" in memory["remote_pg_client"]["programs"]
    assert steps["migrate_data"]["details"]["reported_phases"]
    # migrate converted the generated site's history, and said how much.
    assert steps["migrate_data"]["details"]["history"]["revisions"] >= 20
    assert steps["pipeline_one_run"]["details"]["reported_phases"]["history"] > 0
    # verify asked CKAN's API for every dataset of so small a site.
    for name in ("verify", "verify_all"):
        assert steps[name]["details"]["api_sample"] >= 20, name
    # The three indexers indexed the same datasets, with the same documents.
    indexed = {steps[name]["details"]["documents"] for name in (
        "search_rebuild", "search_rebuild_fast", "reindex")}
    assert len(indexed) == 1 and indexed.pop() > 0
    for name in ("search_rebuild_fast", "reindex"):
        assert steps[name]["details"]["sample_compared"] > 0
        assert steps[name]["details"]["sample_differing"] == 0, name
    # This machine is both hosts, and has zstd.
    assert steps["import.loopback"]["details"]["compressed_by"] \
        == "zstd -1 on the way"
    assert "(compressed by zstd -1 on the way)" in (
        output / "results.txt").read_text()
    # Each step started once autovacuum had finished (or the wait ran out).
    waits = [step["details"]["autovacuum_wait_seconds"]
             for step in steps.values()
             if "autovacuum_wait_seconds" in step.get("details", {})]
    assert len(waits) >= len(EXPECTED_STEPS)
    assert all(0 <= wait <= AUTOVACUUM_WAIT_LIMIT + 1 for wait in waits)

    ratios = results["ratios"]
    assert set(ratios) == set(RATIO_KEYS)
    assert ratios["import_over_floor"]["value"] == pytest.approx(
        steps["import.loopback"]["seconds"] / steps["floor"]["seconds"],
        rel=1e-3)
    assert ratios["import_over_floor_single_copy"]["value"] == pytest.approx(
        steps["import.loopback"]["seconds"]
        / steps["floor.ssh_fc_z0_stream"]["seconds"], rel=1e-3)
    for key in ("import_over_floor", "import_over_floor_single_copy",
                "manual_over_import_loopback",
                "pipeline_over_floor", "pipeline_one_run_over_floor",
                "pipeline_with_reindex_over_floor",
                "search_rebuild_over_reindex",
                "search_rebuild_fast_over_reindex", "python_peak_rss_mb",
                "verify_over_import", "history_over_pipeline"):
        assert ratios[key]["value"] > 0, key
        assert ratios[key]["status"] in ("pass", "miss"), key
    assert ratios["verify_all_over_import"]["status"] == "measured"
    for key in ("data_migration_per_dataset_N_over_M",
                "python_peak_rss_growth_N_over_M",
                "history_per_revision_linearity",
                "history_python_peak_rss_N_over_M"):
        assert ratios[key]["value"] is None
        assert ratios[key]["status"] == "not measured: --compare-datasets 0"
    assert ratios["manual_over_import_link"]["status"].startswith(
        "not measured: manual.link: --skip-slow-link")


def test_stages_measures_those_named_and_lists_every_other_step(tmp_path):
    output = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.bench", "--datasets", "40",
         "--compare-datasets", "20", "--stages", "verify,import_and_migrate",
         "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["parameters"]["stages"] == ["verify", "import_and_migrate"]
    steps = results["steps"]
    measured = {"import.loopback", "migrate_data", "migrate_upgrade",
                "promote", "verify", "verify_all"}
    at_m = [name for stage in stages(main_scale=False) for name in stage.steps]
    expected = {**{name: name for name in EXPECTED_STEPS},
                **{f"{name}_20": name for name in at_m}}
    for name, step in expected.items():
        if step in measured:
            assert steps[name]["status"] == "ok", name
        else:
            assert steps[name]["status"] == "not measured", name
            assert steps[name]["reason"] == "--stages", name
    # Nothing of the stages left out ran (no floor variant, no parts of the
    # manual route, no rounds).
    assert set(steps) - set(expected) == {"generate_40", "generate_20"}
    assert "rounds" not in steps["import.loopback"].get("details", {})
    ratios = results["ratios"]
    for key in ("verify_over_import", "history_per_revision_linearity",
                "history_python_peak_rss_N_over_M"):
        assert ratios[key]["value"] > 0, key
    assert ratios["import_over_floor"]["status"] == \
        "not measured: floor: --stages"
    assert ratios["history_over_pipeline"]["status"] == \
        "not measured: pipeline_one_run: --stages"


def test_every_stage_is_a_step_of_the_run():
    from ckanext.datagovuk.testing.bench.run import Bench
    from ckanext.datagovuk.testing.bench.steps import STAGES

    assert [stage.method for stage in STAGES
            if not callable(getattr(Bench, stage.method, None))] == []
    assert len(set(EXPECTED_STEPS)) == len(EXPECTED_STEPS)
