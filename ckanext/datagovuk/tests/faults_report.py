"""pytest plugin: the table of faults and outcomes, written from the fault
suite's results (``docs/faults.rst``).

A fault test carries ``@pytest.mark.fault(step=..., fault=..., outcome=...)``:
where in the pipeline the fault strikes, what the fault is, and what the
test asserts happens.  After a session that ran any of them, their rows in
``docs/faults.rst`` are replaced by this run's results (passed, failed,
skipped with its reason, or a known bug); rows of fault tests that did not
run this time are kept as they were, so ``-k`` or a single test id never
drops the rest of the table, and rows of tests that no longer exist are
dropped.  Loaded from ``conftest.py`` through ``pytest_plugins``.
"""
from __future__ import annotations

import datetime
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
TABLE_PATH = os.path.join(ROOT, "docs", "faults.rst")
COLUMNS = ("Step", "Fault", "Outcome asserted", "Result", "Date", "Test")
# The pipeline's order, so the table reads from the first step to the last.
STEP_ORDER = ("input", "transfer", "restore", "data migration", "archive",
              "schema upgrade", "verify", "concurrency", "pipeline")

HEADER = """\
Faults and outcomes
===================

What happens when something breaks while an old site is moved: every row is
a test of ``ckanext/datagovuk/tests/test_faults.py`` (real PostgreSQL, a real
loopback ``sshd``, the real commands in their own processes).  Every failing
case also asserts: the target database is unchanged (its ``pg_dump`` is
identical) or complete, never in between; the source database is never
modified; no staging database is left; the command fails with one
``Error:`` line and a non-zero exit; and running again after the fault is
removed succeeds.

This file is generated from the suite's last results (``make test``); do not
edit it by hand.  "known bug" rows are expected failures (``xfail``) whose
reason names the defect.

"""

_MARKER_HELP = ("fault(step, fault, outcome): a fault-injection test; its "
                "result goes into docs/faults.rst")


def pytest_configure(config):
    config.addinivalue_line("markers", _MARKER_HELP)
    config._faults_report = _Collector()
    config.pluginmanager.register(config._faults_report, "faults_report")


class _Collector:
    def __init__(self):
        self.faults: dict[str, dict[str, str]] = {}
        self.results: dict[str, str] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        # Deselected items are gone by now: only what really runs counts.
        for item in items:
            marker = item.get_closest_marker("fault")
            if marker is None:
                continue
            missing = {"step", "fault", "outcome"} - set(marker.kwargs)
            if missing:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.fault needs "
                    f"{', '.join(sorted(missing))}")
            row = {key: str(marker.kwargs[key])
                   for key in ("step", "fault", "outcome")}
            callspec = getattr(item, "callspec", None)
            if callspec is not None:
                # One row per parameter: say which (SIGINT, SIGTERM, ...).
                row["fault"] += f" [{callspec.id}]"
            self.faults[item.nodeid] = row

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.faults:
            return
        result = _result(report)
        if result is None:
            return
        previous = self.results.get(report.nodeid)
        # A teardown error spoils a pass; nothing spoils a failure.
        if previous is None or previous == "passed":
            self.results[report.nodeid] = result

    def pytest_sessionfinish(self, session):
        ran = {nodeid: result for nodeid, result in self.results.items()}
        if not ran:
            return
        write_table(self.faults, ran)


def _result(report) -> str | None:
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return f"known bug: {report.wasxfail}"
        return "failed (known bug fixed? remove the xfail)"
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) \
            else str(report.longrepr)
        return f"skipped: {reason.removeprefix('Skipped: ')}"
    if report.failed:
        return "failed" if report.when == "call" else f"error ({report.when})"
    if report.when == "call":
        return "passed"
    return None


def _cell(text: str) -> str:
    return " ".join(str(text).split())


def _row_lines(row: dict[str, str]) -> list[str]:
    values = [row["step"], row["fault"], row["outcome"], row["result"],
              row["date"], f"``{row['test']}``"]
    lines = [f"   * - {_cell(values[0])}"]
    lines += [f"     - {_cell(value)}" for value in values[1:]]
    return lines


def read_table(path: str = TABLE_PATH) -> dict[str, dict[str, str]]:
    """The rows of an earlier table, by test id."""
    if not os.path.exists(path):
        return {}
    rows, current = {}, []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for line in lines + ["   * - "]:
        if line.startswith("   * - "):
            if len(current) == len(COLUMNS) and current[0] != COLUMNS[0]:
                step, fault, outcome, result, date, test = current
                test = test.strip("`")
                rows[test] = dict(step=step, fault=fault, outcome=outcome,
                                  result=result, date=date, test=test)
            current = [line[len("   * - "):]]
        elif line.startswith("     - ") and current:
            current.append(line[len("     - "):])
    return rows


def _still_exists(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    function = re.split(r"[\[:]", name)[0]
    try:
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            return f"def {function}(" in handle.read()
    except OSError:
        return False


def _order(row: dict[str, str]):
    step = row["step"]
    rank = STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER)
    return rank, step, row["fault"], row["test"]


def write_table(faults: dict[str, dict[str, str]], results: dict[str, str],
                path: str = TABLE_PATH, when: datetime.datetime | None = None
                ) -> None:
    when = when or datetime.datetime.now(datetime.timezone.utc)
    rows = {test: row for test, row in read_table(path).items()
            if _still_exists(test)}
    for nodeid, result in results.items():
        rows[nodeid] = dict(faults[nodeid], result=result, test=nodeid,
                            date=when.strftime("%Y-%m-%d"))
    lines = [HEADER.rstrip("\n"), "",
             ".. list-table::", "   :header-rows: 1",
             "   :widths: 12 22 36 10 10 10", ""]
    lines.append(f"   * - {COLUMNS[0]}")
    lines += [f"     - {name}" for name in COLUMNS[1:]]
    for row in sorted(rows.values(), key=_order):
        lines += _row_lines(row)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)
