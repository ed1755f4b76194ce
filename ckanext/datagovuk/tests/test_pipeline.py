"""``datagovuk migrate --from``: import, migrate and promote in a staging
database, swapped in only when every step succeeded.  Real sshd on
loopback, real PostgreSQL, CKAN's real migrations; nothing mocked."""
import json
import shutil

import pytest

from ckanext.datagovuk import alembic_runner
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import (TEST_INI, one_line_error,
                                              run_command, run_sql)
from ckanext.datagovuk.tests.test_transfer import (  # noqa: F401 (fixtures)
    fingerprint, leftovers, database_name, missing_url, remote_db_args,
    source, ssh_args)

CONFIGURED_SYSADMIN = oldsite.KNOWN_CASES.sysadmins_with_membership[0]


@pytest.fixture
def ini(tmp_path):
    """test.ini with ckanext.datagovuk.sysadmins set."""
    lines = []
    for line in open(TEST_INI).read().splitlines():
        lines.append(line)
        if line.strip() == "[app:main]":
            lines.append(f"ckanext.datagovuk.sysadmins = {CONFIGURED_SYSADMIN}")
    path = tmp_path / "ckan.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def paster_migrate_from(ini, server, source, target_url, *extra):
    return run_command(
        ["paster", "datagovuk", "migrate", "--from", server.destination,
         *ssh_args(server), *remote_db_args(source), *extra, "-c", ini],
        db_url=target_url, cwd="/")


def sysadmins(url):
    return {row[0] for row in run_sql(
        url, "SELECT name FROM \"user\" WHERE sysadmin AND state = 'active'")}


def test_the_whole_move_lands_in_one_swap(ini, ssh_server, source,
                                          missing_url, pg_admin_url):
    result = paster_migrate_from(ini, ssh_server, source, missing_url,
                                 "--resolve-email-clash", "keep-oldest")
    assert result.returncode == 0, result.stderr
    tables = {row[0] for row in run_sql(
        missing_url, "SELECT tablename FROM pg_tables "
                     "WHERE schemaname = 'public'")}
    assert "resource_group" not in tables and "migrate_version" not in tables
    assert run_sql(missing_url, "SELECT version_num FROM alembic_version") \
        == [(alembic_runner.head(),)]
    assert run_sql(missing_url, "SELECT count(*) FROM tag") == [(0,)]
    # The new site user (ckan.site_id) is never demoted.
    assert sysadmins(missing_url) == {CONFIGURED_SYSADMIN,
                                      oldsite.KNOWN_CASES.site_user}
    assert run_sql(missing_url, "SELECT user_name, via FROM "
                                "datagovuk.promotions") == [
        (CONFIGURED_SYSADMIN, "configured")]
    assert fingerprint(source[0]) == source[2], "the source was modified"
    assert leftovers(pg_admin_url, database_name(missing_url)) == []
    # One table of the steps, each once, the migration under the target's
    # name (the staging database is gone after the swap).
    for step in ("checks", "transfer+restore", "verify", "migrate",
                 "promote --configured", "swap"):
        assert result.stdout.count(f"\n{step}: done in ") == 1, step
    assert "__import_" not in result.stdout
    # What an operator watches (stdout not a terminal): a line per step,
    # the report, the table and the next steps; no line per revision.
    assert len(result.stdout.splitlines()) <= 60, result.stdout
    assert " (0.0 s)" not in result.stdout
    assert f"-c {ini} datagovuk promote --demoted" in result.stdout
    assert "CKAN_INI" not in result.stdout


def test_plan_shows_the_commands_and_changes_nothing(ini, ssh_server, source,
                                                    make_database,
                                                    pg_admin_url):
    target = make_database()
    result = paster_migrate_from(ini, ssh_server, source, target, "--plan")
    assert result.returncode == 0, result.stderr
    assert "ssh " in result.stdout
    # One command per step, for the format and compression that will be
    # used: no "or psql" for a custom dump, no -Z1 line when zstd carries
    # it (only the fallback named), and the swap once, as step 4.
    if shutil.which("zstd"):
        assert "zstd -d -q -c" in result.stdout
        assert "pg_dump -Fc -Z1" not in result.stdout
    else:
        assert "pg_dump -Fc -Z1 -O -x" in result.stdout
    assert "or psql" not in result.stdout
    assert result.stdout.count("RENAME TO") == 1
    assert "\n4. swap: " in result.stdout
    assert "--section=pre-data --section=data" in result.stdout
    assert "pg_restore --no-owner" in result.stdout
    assert "-j 2 --section=post-data" in result.stdout
    assert f"3. promote {CONFIGURED_SYSADMIN}" in result.stdout
    assert "pass" not in result.stdout.replace("PGPASSWORD=***", "")
    assert run_sql(target, "SELECT count(*) FROM pg_tables "
                           "WHERE schemaname = 'public'") == [(0,)]
    assert leftovers(pg_admin_url, database_name(target)) == []


def test_a_failing_migration_leaves_the_site_database_as_it_was(
        ini, ssh_server, source, make_database, pg_admin_url):
    # The generated site has two kept users sharing an email: without
    # --resolve-email-clash the migration stops inside the staging database.
    target = make_database()
    run_sql(target, "CREATE TABLE marker (note text); "
                    "INSERT INTO marker VALUES ('the site before')")
    before = fingerprint(target)
    result = paster_migrate_from(ini, ssh_server, source, target, "--replace")
    assert "--resolve-email-clash keep-oldest" in one_line_error(result)
    assert fingerprint(target) == before
    assert leftovers(pg_admin_url, database_name(target)) == []
    assert fingerprint(source[0]) == source[2]


def test_an_unknown_configured_sysadmin_stops_it_before_the_swap(
        tmp_path, ini, ssh_server, source, make_database, pg_admin_url):
    broken = tmp_path / "unknown-sysadmin.ini"
    broken.write_text(open(ini).read().replace(
        f"ckanext.datagovuk.sysadmins = {CONFIGURED_SYSADMIN}",
        "ckanext.datagovuk.sysadmins = nobody-of-that-name"))
    target = make_database()
    result = paster_migrate_from(str(broken), ssh_server, source, target,
                                 "--resolve-email-clash", "keep-oldest")
    assert "nobody-of-that-name" in one_line_error(result)
    assert run_sql(target, "SELECT count(*) FROM pg_tables "
                           "WHERE schemaname = 'public'") == [(0,)]
    assert leftovers(pg_admin_url, database_name(target)) == []


@pytest.mark.parametrize("args, message", [
    (["--plan"], "--plan goes with --from"),
    (["--jobs", "2"], "--jobs only go with --from"),
])
def test_options_that_need_from_are_usage_errors(make_database, args,
                                                 message):
    result = run_command(["paster", "datagovuk", "migrate", *args,
                          "-c", TEST_INI], db_url=make_database(), cwd="/")
    assert result.returncode == 2
    assert message in result.stderr


def test_json_is_one_object_with_the_steps_and_progress_on_stderr(
        ini, ssh_server, source, missing_url, pg_admin_url):
    result = paster_migrate_from(ini, ssh_server, source, missing_url,
                                 "--resolve-email-clash", "keep-oldest",
                                 "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"] is True and shown["error"] is None
    assert [step["name"] for step in shown["steps"]] == [
        "checks", "transfer+restore", "indexes and keys", "verify",
        "migrate", "promote --configured", "swap"]
    assert shown["migration"]["outcome"] == "committed"
    # The report's sysadmins agree with promote's: people only.
    assert shown["migration"]["counts_after"]["sysadmins"] == 0
    assert shown["promotion"]["after"] == [CONFIGURED_SYSADMIN]
    assert "migrate ..." in result.stderr
    assert leftovers(pg_admin_url, database_name(missing_url)) == []


def test_json_failure_is_one_object_naming_the_error(
        ini, ssh_server, source, make_database, pg_admin_url):
    target = make_database()
    result = paster_migrate_from(ini, ssh_server, source, target, "--json")
    assert result.returncode == 1
    shown = json.loads(result.stdout)
    assert shown["ok"] is False
    assert "--resolve-email-clash keep-oldest" in shown["error"]
    assert shown["steps"][-1] == {**shown["steps"][-1], "name": "migrate",
                                  "result": "failed"}
    assert leftovers(pg_admin_url, database_name(target)) == []
