"""The table of faults (``faults_report``): written from results, merged per
test so that a partial run never drops the other rows, valid RST."""
import datetime

import docutils.core

from ckanext.datagovuk.tests import faults_report

THIS = "ckanext/datagovuk/tests/test_faults_report.py"
WHEN = datetime.datetime(2026, 11, 26, tzinfo=datetime.timezone.utc)


def fault(step, name):
    return {"step": step, "fault": name, "outcome": f"{name}: as it was"}


def test_a_partial_run_replaces_its_rows_and_keeps_the_others(tmp_path):
    path = str(tmp_path / "faults.rst")
    again = f"{THIS}::test_the_table_is_valid_restructuredtext[x]"
    first = {f"{THIS}::test_a_partial_run_replaces_its_rows_and_keeps_the_"
             "others": fault("transfer", "cut link"),
             again: fault("input", "bad option")}
    faults_report.write_table(first, {nodeid: "passed" for nodeid in first},
                              path, WHEN)
    rows = faults_report.read_table(path)
    assert {row["result"] for row in rows.values()} == {"passed"}
    assert [row["step"] for row in rows.values()] == ["input", "transfer"]

    faults_report.write_table({again: fault("input", "bad option")},
                              {again: "known bug: cli.py prints three lines"},
                              path, WHEN + datetime.timedelta(days=1))
    rows = faults_report.read_table(path)
    assert rows[again]["result"] == "known bug: cli.py prints three lines"
    assert rows[again]["date"] == "2026-11-27"
    kept = rows[next(nodeid for nodeid in first if nodeid != again)]
    assert kept["result"] == "passed" and kept["date"] == "2026-11-26"


def test_rows_of_tests_that_no_longer_exist_are_dropped(tmp_path):
    path = str(tmp_path / "faults.rst")
    gone = f"{THIS}::test_that_was_deleted"
    faults_report.write_table({gone: fault("restore", "disk full")},
                              {gone: "passed"}, path, WHEN)
    here = f"{THIS}::test_rows_of_tests_that_no_longer_exist_are_dropped"
    faults_report.write_table({here: fault("restore", "disk full")},
                              {here: "failed"}, path, WHEN)
    assert list(faults_report.read_table(path)) == [here]


def test_the_table_is_valid_restructuredtext(tmp_path):
    path = str(tmp_path / "faults.rst")
    nodeid = f"{THIS}::test_the_table_is_valid_restructuredtext"
    faults_report.write_table({nodeid: fault("pipeline", "a `quoted` one")},
                              {nodeid: "passed"}, path, WHEN)
    html = docutils.core.publish_string(
        open(path).read(), writer_name="html",
        settings_overrides={"halt_level": 2, "report_level": 2}).decode()
    assert "<table" in html and "Faults and outcomes" in html
