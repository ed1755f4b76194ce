"""``datagovuk verify`` through the real commands (``ckan -c`` and
``paster``) on copies of the generated old site, migrated by the real
``migrate``: its report, its JSON, its exit status, the API sample, and
what it refuses."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from ckanext.datagovuk.tests.conftest import (
    TEST_INI, VENV_BIN, ckan_datagovuk, dump_database, one_line_error,
    paster_datagovuk, run_sql)

MIGRATE = ["migrate", "--resolve-email-clash", "keep-oldest"]
SEED = re.compile(r"API sample seed: (\d+)")


@pytest.fixture
def migrated(make_database, migrated_old_site_template):
    return make_database(template=migrated_old_site_template)


@pytest.mark.parametrize("command", [ckan_datagovuk, paster_datagovuk],
                         ids=["ckan", "paster"])
def test_a_clean_migration_verifies(command, migrated):
    before = dump_database(migrated)
    result = command(["verify", "--sample", "40"], db_url=migrated)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every check holds" in out
    for name in ("datasets", "dataset extras", "resources", "publishers",
                 "users", "archive", "tags", "schema", "API sample"):
        assert re.search(rf"^  {name}: \d+ .*: ok$", out, re.M), (name, out)
    assert SEED.search(out)
    # read-only
    assert dump_database(migrated) == before


def test_json_has_ok_steps_error_and_differences(migrated):
    run_sql(migrated, "UPDATE \"user\" SET sysadmin = true "
                      "WHERE name = 'harvest'")
    result = ckan_datagovuk(["verify", "--json", "--sample", "5",
                             "--seed", "7"], db_url=migrated)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["error"] is None
    assert report["seed"] == 7
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["users"]["result"] == "failed"
    assert steps["datasets"]["result"] == "ok"
    assert {"check": "users", "subject": "user harvest",
            "field": "sysadmin", "expected": False,
            "found": True} in report["differences"]


def test_the_same_seed_asks_for_the_same_sample(migrated):
    outputs = [ckan_datagovuk(["verify", "--sample", "3", "--seed", "11"],
                              db_url=migrated).stdout for _ in range(2)]
    assert "API sample seed: 11" in outputs[0]
    assert outputs[0].split("\n", 1)[1] == outputs[1].split("\n", 1)[1]


def test_a_dataset_ckan_cannot_serve_fails_the_api_sample(migrated):
    # The resource's extras column is JSON that CKAN reads when it serves
    # the dataset; no database check compares it.
    name = run_sql(migrated, """
        UPDATE resource r SET extras = '{broken' FROM package p
        WHERE p.id = r.package_id AND r.state = 'active' AND p.name = (
            SELECT p2.name FROM package p2 JOIN resource r2
            ON r2.package_id = p2.id WHERE r2.state = 'active'
            AND p2.state = 'active' ORDER BY p2.name LIMIT 1)
        RETURNING p.name""")[0][0]
    result = ckan_datagovuk(["verify", "--all"], db_url=migrated)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines()
             if "FAILED" in line and line.startswith("  ")]
    assert len(lines) == 1 and "API sample" in lines[0], result.stdout
    assert f"dataset {name}: package_show: expected 'served'" in \
        result.stdout


@pytest.mark.parametrize("command", [ckan_datagovuk, paster_datagovuk],
                         ids=["ckan", "paster"])
def test_a_database_without_a_manifest_is_refused(command, old_site):
    result = command(["verify"], db_url=old_site)
    assert result.returncode == 1
    assert "no manifest" in one_line_error(result)
    if command is ckan_datagovuk:
        result = command(["verify", "--json"], db_url=old_site)
        assert result.returncode == 1 and not result.stderr.strip()
        report = json.loads(result.stdout)
        assert report["ok"] is False and "no manifest" in report["error"]
        assert ":pass@" not in report["database"]


def test_after_no_data_migrations_everything_is_expected_unchanged(
        old_site):
    result = ckan_datagovuk(MIGRATE + ["--no-data-migrations"],
                            db_url=old_site)
    assert result.returncode == 0, result.stderr
    result = ckan_datagovuk(["verify", "--sample", "20"], db_url=old_site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tags: skipped (the data migration did not run" in result.stdout
    # what 001 would have done is now a difference
    run_sql(old_site, "UPDATE package SET extras = extras || jsonb_build_"
                      "object('theme-primary', 'society') WHERE extras "
                      "->> 'theme-primary' = 'Society'")
    result = ckan_datagovuk(["verify", "--sample", "0"], db_url=old_site)
    assert result.returncode == 1
    assert re.search(r"dataset extras: .*FAILED.*extra theme-primary: "
                     r"expected 'Society', found 'society'", result.stdout)


def test_after_no_archive_the_archive_check_is_skipped(old_site):
    result = ckan_datagovuk(MIGRATE + ["--no-archive"], db_url=old_site)
    assert result.returncode == 0, result.stderr
    result = ckan_datagovuk(["verify", "--sample", "10"], db_url=old_site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  archive: skipped (migrated with --no-archive)" in result.stdout


@pytest.mark.parametrize("version", [73, 86])
def test_a_legacy_site_moved_without_data_migrations_verifies(
        version, legacy_site_templates, make_database):
    # Other schemas keep a resource's dataset and the extras elsewhere
    # (resource.package_id from 074; package_extra until 106).
    url = make_database(template=legacy_site_templates[version])
    result = ckan_datagovuk(MIGRATE + ["--no-data-migrations"], db_url=url)
    assert result.returncode == 0, result.stderr
    result = ckan_datagovuk(["verify", "--all"], db_url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^  resources: [1-9]\d* .*: ok$", result.stdout, re.M)


def test_a_database_not_upgraded_yet_is_refused(old_site):
    result = ckan_datagovuk(MIGRATE + ["--skip-upgrade"], db_url=old_site)
    assert result.returncode == 0, result.stderr
    result = ckan_datagovuk(["verify"], db_url=old_site)
    assert "has not been upgraded yet" in one_line_error(result)


# Three datasets CKAN cannot serve and one with a changed title:
# differences in the API sample's first, middle and last chunks.
SERVED_BADLY = """
    UPDATE resource r SET extras = '{broken' FROM package p
    WHERE p.id = r.package_id AND r.state = 'active' AND p.name IN (
        SELECT name FROM (SELECT p2.name, row_number() OVER (ORDER BY p2.id)
            AS n, count(*) OVER () AS total FROM package p2
            WHERE p2.state = 'active' AND EXISTS (SELECT 1 FROM resource r2
                WHERE r2.package_id = p2.id AND r2.state = 'active')) x
        WHERE n IN (1, total / 2, total));
    UPDATE package SET title = 'tampered' WHERE id = (SELECT id
        FROM package WHERE state = 'active' ORDER BY id DESC OFFSET 1
        LIMIT 1)"""


def test_workers_give_the_report_of_one_process(migrated):
    run_sql(migrated, SERVED_BADLY)
    reports = []
    for jobs in ("1", "2", "3"):
        result = ckan_datagovuk(["verify", "--json", "--all", "--seed", "5",
                                 "--jobs", jobs], db_url=migrated)
        assert result.returncode == 1, result.stderr
        reports.append(json.loads(result.stdout))
    sample = next(step for step in reports[0]["steps"]
                  if step["name"] == "API sample")
    assert sample["result"] == "failed" and sample["differences"] >= 4
    assert reports[1] == reports[0] and reports[2] == reports[0]


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return {int(child) for child in handle.read().split()}


def _gone(pids: set[int], deadline: float) -> bool:
    while time.monotonic() < deadline:
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _sessions(url: str) -> int:
    return run_sql(url, "SELECT count(*) FROM pg_stat_activity WHERE "
                        "datname = current_database() "
                        "AND pid <> pg_backend_pid()")[0][0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_ends_every_worker_and_leaves_nothing(migrated,
                                                           signum):
    process = subprocess.Popen(
        [os.path.join(VENV_BIN, "ckan"), "-c", TEST_INI, "datagovuk",
         "verify", "--all", "--jobs", "2"],
        env={**os.environ, "CKAN_SQLALCHEMY_URL": migrated},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while len(workers) < 2 and process.poll() is None \
            and time.monotonic() < deadline:
        workers = _children(process.pid)
        time.sleep(0.01)
    assert len(workers) == 2, "the workers never started"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1
    assert stderr == ("Error: verify stopped (Ctrl-C or SIGTERM) before it "
                      "finished: no report; it changed nothing\n")
    assert _gone(workers, time.monotonic() + 30), workers
    deadline = time.monotonic() + 30
    while _sessions(migrated) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sessions(migrated) == 0
