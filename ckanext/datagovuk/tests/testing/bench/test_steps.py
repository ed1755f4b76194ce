"""What the benchmark reads from our commands' output, and the choice of
stages (``--stages``)."""
from __future__ import annotations

import pytest

from ckanext.datagovuk import history, migrate_report, output
from ckanext.datagovuk.testing.bench.cli import parse_args
from ckanext.datagovuk.testing.bench.steps import (
    EXPECTED_STEPS, STAGE_NAMES, STAGES, parse_report, parse_stages, selected)


def _log(tmp_path, *parts: str) -> str:
    path = tmp_path / "step.log"
    path.write_text("$ the command\n" + "\n".join(parts) + "\n")
    return str(path)


def test_the_history_and_its_phase_come_from_migrates_own_report(tmp_path):
    converted = history.HistoryResult(datasets=40, revisions=120,
                                      completed=118, added=2, seconds=0.234)
    table = output.Result(steps=[output.Step("manifest", 0.5),
                                 output.Step("history", 1.25)]).table()
    report = parse_report(_log(tmp_path, *migrate_report._history_lines(
        converted), "", table))
    assert report["history"] == {"revisions": 120, "datasets": 40,
                                 "seconds": 0.2}
    assert report["reported_phases"] == {"manifest": 0.5, "history": 1.25}


def test_no_history_line_when_migrate_did_not_convert_it(tmp_path):
    skipped = history.HistoryResult(skipped="--no-history: no revision "
                                    "turned into an activity")
    report = parse_report(_log(tmp_path, *migrate_report._history_lines(skipped)))
    assert "history" not in report


def test_verifys_api_sample_is_counted(tmp_path):
    report = parse_report(_log(
        tmp_path, "  API sample: 1200 datasets, publishers and users served "
        "by package_show, organization_show, user_show: ok"))
    assert report["api_sample"] == 1200


def test_every_stage_by_default_and_the_ones_named_otherwise():
    assert parse_stages("") == STAGE_NAMES
    assert "verify" in STAGE_NAMES and "import_and_migrate" in STAGE_NAMES
    chosen = parse_stages(" verify,import_and_migrate,verify ")
    assert chosen == ("verify", "import_and_migrate")
    assert [stage.method for stage in STAGES if selected(stage, chosen)] == [
        "stage_import_and_migrate", "stage_verify"]
    with pytest.raises(ValueError, match="unknown stage 'verfy'"):
        parse_stages("verify,verfy")
    with pytest.raises(ValueError, match="no stage named"):
        parse_stages(",")


def test_an_unknown_stage_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--stages", "import,verify"])
    assert stopped.value.code == 2
    assert "--stages: unknown stage 'import' (one of startup, floor, " \
        in capsys.readouterr().err
    assert parse_args(["--stages", "one_run"]).stages == ("one_run",)


def test_verify_is_a_stage_of_both_scales():
    stage = next(stage for stage in STAGES if stage.method == "stage_verify")
    assert stage.steps == ("verify", "verify_all")
    assert not stage.main_scale_only
    assert {"verify", "verify_all"} <= set(EXPECTED_STEPS)
