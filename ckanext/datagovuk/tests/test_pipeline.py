"""``datagovuk migrate --from``: import, migrate and promote in a staging
database, swapped in only when every step succeeded.  Real sshd on
loopback, real PostgreSQL, CKAN's real migrations; nothing mocked."""
import os

import pytest

from ckanext.datagovuk import alembic_runner, db
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import (TEST_INI, one_line_error,
                                              remote_pg_dump, run_command,
                                              run_sql)
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
    assert "promote --configured" in result.stdout
    assert "Time of each step: import" in result.stdout


def test_plan_shows_the_commands_and_changes_nothing(ini, ssh_server, source,
                                                    make_database,
                                                    pg_admin_url):
    target = make_database()
    result = paster_migrate_from(ini, ssh_server, source, target, "--plan",
                                 "--resolve-email-clash", "keep-oldest")
    assert result.returncode == 0, result.stderr
    assert "  decided: 1 email address(es) shared, ignoring case, by active " \
        "users the migration keeps (CKAN 2.12 forbids it) (settled by " \
        "--resolve-email-clash keep-oldest)" in result.stdout
    assert "ssh " in result.stdout
    assert "pg_dump -Fc -Z1 -O -x" in result.stdout
    assert "--section=pre-data --section=data" in result.stdout
    assert "pg_restore --no-owner" in result.stdout
    assert "-j 2 --section=post-data" in result.stdout
    assert f"3. promote {CONFIGURED_SYSADMIN}" in result.stdout
    assert "pass" not in result.stdout.replace("PGPASSWORD=***", "")
    assert run_sql(target, "SELECT count(*) FROM pg_tables "
                           "WHERE schemaname = 'public'") == [(0,)]
    assert leftovers(pg_admin_url, database_name(target)) == []


def test_a_decision_is_found_before_anything_is_transferred(
        ini, ssh_server, source, make_database, pg_admin_url, tmp_path):
    # The generated site has two kept users sharing an email (and a pair
    # whose older account 001 deletes, which needs no decision): without
    # --resolve-email-clash the move stops before pg_dump dumps anything.
    script, marker = remote_pg_dump(tmp_path, "trickle")
    target = make_database()
    run_sql(target, "CREATE TABLE marker (note text); "
                    "INSERT INTO marker VALUES ('the site before')")
    before = fingerprint(target)
    result = paster_migrate_from(ini, ssh_server, source, target, "--replace",
                                 "--remote-pg-dump", script)
    message = one_line_error(result)
    assert message.startswith("Error: 1 email address(es) shared")
    assert "--resolve-email-clash keep-oldest" in message
    assert "needs a decision: 1 email address(es)" in result.stdout
    assert not os.path.exists(marker), "pg_dump dumped"
    assert "staging database:" not in result.stdout
    assert fingerprint(target) == before
    assert leftovers(pg_admin_url, database_name(target)) == []
    assert fingerprint(source[0]) == source[2]


def test_plan_predicts_the_refusal_and_exits_non_zero(ini, ssh_server,
                                                       source, make_database):
    result = paster_migrate_from(ini, ssh_server, source, make_database(),
                                 "--plan")
    assert result.returncode == 1
    assert "  needs a decision: 1 email address(es) shared, ignoring case, " \
        "by active users the migration keeps (CKAN 2.12 forbids it): give " \
        "--resolve-email-clash keep-oldest" in result.stdout
    assert one_line_error(result).startswith("Error: the move would stop: ")


@pytest.fixture
def source_at(make_database, legacy_site_templates, old_site_template):
    """A source as ``source`` is, from a template (a legacy version's site,
    or the old site to be broken)."""
    def make(template):
        url = db.parse(make_database(template=template))
        return (url, f"host=127.0.0.1 port={url.port} dbname={url.database} "
                     f"user={url.username}", None)
    return make


@pytest.mark.parametrize("legacy, change, expected", [
    (82, None, "database is a CKAN database at legacy sqlalchemy-migrate "
               "version 82"),
    (None, "UPDATE migrate_version SET repository_id = 'doi', "
           "repository_path = '/src/ckanext-doi/migration'",
     "migrate_version has no row for CKAN itself"),
    (None, "ALTER TABLE migrate_version RENAME COLUMN version TO v",
     "cannot read the old database"),
], ids=["legacy 82", "no CKAN row", "unreadable"])
def test_refusals_are_found_before_the_transfer(
        ini, ssh_server, source_at, legacy_site_templates, old_site_template,
        legacy, change, expected, missing_url, pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    old = source_at(legacy_site_templates[legacy] if legacy
                    else old_site_template)
    if change:
        run_sql(old[0], change)
    result = paster_migrate_from(ini, ssh_server, old, missing_url,
                                 "--resolve-email-clash", "keep-oldest",
                                 "--remote-pg-dump", script)
    assert expected in one_line_error(result)
    assert not os.path.exists(marker), "pg_dump dumped"
    assert leftovers(pg_admin_url, database_name(missing_url)) == []
    plan = paster_migrate_from(ini, ssh_server, old, missing_url, "--plan",
                               "--resolve-email-clash", "keep-oldest")
    assert plan.returncode == 1 and expected in one_line_error(plan)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "host:PATH"])
def test_a_dump_file_is_judged_once_its_data_is_in_before_its_indexes(
        ini, ssh_server, old_site_dump, missing_url, pg_admin_url, remote):
    source = [f"{ssh_server.destination}:{old_site_dump}",
              *ssh_args(ssh_server)] if remote else [old_site_dump]
    result = run_command(["paster", "datagovuk", "migrate", "--from",
                          *source, "-c", ini], db_url=missing_url, cwd="/")
    assert one_line_error(result).startswith(
        "Error: 1 email address(es) shared")
    assert ("transfer+restore: done" if remote else "restore: done") \
        in result.stdout
    assert "needs a decision: 1 email address(es)" in result.stdout
    assert "indexes and keys..." not in result.stdout
    assert leftovers(pg_admin_url, database_name(missing_url)) == []


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
    (["--from", "oldsite", "--json"], "--json does not go with --from"),
])
def test_options_that_need_from_are_usage_errors(make_database, args,
                                                 message):
    result = run_command(["paster", "datagovuk", "migrate", *args,
                          "-c", TEST_INI], db_url=make_database(), cwd="/")
    assert result.returncode == 2
    assert message in result.stderr
