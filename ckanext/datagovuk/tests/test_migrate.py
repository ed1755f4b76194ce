"""``datagovuk migrate`` end to end, through the real commands, on copies of
the generated old site (real PostgreSQL, CKAN's real migrations, no mocks:
``package_show``/``user_show`` run in a CKAN process of their own, which
needs no Solr for them)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from ckanext.datagovuk import archive, db, migrate, runner
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.tests.conftest import (
    DOI_MIGRATE_VERSION_ROW, TEST_INI, admin_execute, ckan_datagovuk,
    dump_database, one_line_error, paster_datagovuk,
    put_another_extensions_row_first, run_command)
from ckanext.datagovuk.tests.conftest import run_sql as query

KNOWN = oldsite.KNOWN_CASES
MIGRATE = ["migrate", "--resolve-email-clash", "keep-oldest"]
RESOURCE_LIST_KEYS = {"individual_resources", "additional_resources",
                      "timeseries_resources"}
NEW_HARVEST_TYPES = {"single-doc", "csw", "waf", "dcat_json", "ckan"}
VALID_USER_NAME = re.compile(r"^[a-z0-9_\-]{2,100}$")


def snapshot_old_site(url: str) -> dict:
    """What the old site holds that the migration must keep or change."""
    extras: dict[str, dict] = {}
    for package_id, key, value in query(url, """
            SELECT e.package_id, e.key, e.value FROM package_extra e
            JOIN package p ON p.id = e.package_id
            WHERE p.state = 'active' AND e.state = 'active'"""):
        extras.setdefault(package_id, {})[key] = value
    return {
        "active_datasets": dict(query(
            url, "SELECT id, name FROM package WHERE state = 'active'")),
        "resources": set(query(url, """
            SELECT g.package_id, r.id FROM resource r
            JOIN resource_group g ON g.id = r.resource_group_id
            JOIN package p ON p.id = g.package_id
            WHERE p.state = 'active' AND r.state = 'active'
              AND r.description IS DISTINCT FROM 'Organogram viewer'""")),
        "extras": extras,
        "users": dict(query(url, 'SELECT name, id FROM "user"')),
        "dgu_rows": {table: query(url, f'SELECT count(*) FROM "{table}"')[0][0]
                     for table in archive.DGU_TABLES},
        "harvest_sources": dict(query(
            url, "SELECT id, type FROM harvest_source")),
        "revisions": query(url, "SELECT count(*) FROM revision")[0][0],
        "related": query(url, "SELECT count(*) FROM related")[0][0],
        "history_rows": {
            table: query(url, f'SELECT count(*) FROM "{table}"')[0][0]
            for table in [*archive.DROPPED_BY_UPGRADE, *archive.TAG_TABLES]
            if query(url, "SELECT to_regclass(%s)", (table,))[0][0]},
    }


def expected_extras(old: dict) -> dict:
    """001's mapping of the extras, as CKAN 2.12's package.extras JSON."""
    new = {}
    for key, value in old.items():
        if key in RESOURCE_LIST_KEYS:
            continue
        if key == "theme-primary":
            value = oldsite.THEME_SLUGS.get(value, value)
        if key == "schema":
            key = "schema-vocabulary"
        new[key] = "" if value is None else value
    return new


@pytest.fixture(scope="module")
def migrated(make_module_database, old_site_template):
    """One old site migrated by `ckan -c test.ini datagovuk migrate`, with
    the snapshot taken before."""
    url = make_module_database(template=old_site_template)
    before = snapshot_old_site(url)
    result = ckan_datagovuk([*MIGRATE, "-v"], db_url=url)
    assert result.returncode == 0, result.stderr
    return {"url": url, "before": before, "result": result}


@pytest.fixture(scope="module")
def migrated_with_paster(make_module_database, old_site_template):
    url = make_module_database(template=old_site_template)
    result = paster_datagovuk(MIGRATE, db_url=url)
    assert result.returncode == 0, result.stderr
    return {"url": url, "result": result}


@pytest.fixture(scope="module")
def fresh_schema(ckan_head_template, ckan_db_url):
    """``pg_dump -s -n public`` of a database made by `ckan db init` (the
    same plugins: test.ini's)."""
    url = db.with_database(ckan_db_url, ckan_head_template)
    return dump_database(url.render_as_string(hide_password=False),
                         "-s", "-n", "public")


def db_check(url: str) -> subprocess.CompletedProcess:
    return run_command(["ckan", "-c", TEST_INI, "db", "check"], db_url=url)


# --- The acceptance, after `ckan ... datagovuk migrate` ----------------------

def test_report_names_versions_steps_demotions_and_next_steps(migrated):
    out = migrated["result"].stdout
    assert "Migration of" in out and ": committed" in out
    assert "schema version: legacy 71 -> alembic " in out
    assert "(head)" in out
    assert "001_bytemark_to_govuk.sql" in out
    assert re.search(r"step \d+: ", out), out
    assert "Demoted sysadmins" in out and "promote --demoted" in out
    assert "datagovuk reindex" in out
    assert "ckan.storage_path" in out and "datastore" in out
    # -v: progress with timings comes first, a line per revision
    assert re.search(r"schema upgrade: done in [\d.]+ s", out)
    assert "Migration of" in out.split("schema upgrade: done")[1]
    assert re.search(r"\n  core \w+ .*\([\d.]+ s\)\n", out)


def test_the_traps_list_counts_the_email_clashes_the_decision_settled(
        migrated):
    # One figure: the addresses that clash once the data migrations ran,
    # which the error without a decision names too.
    out = migrated["result"].stdout
    listed = int(re.search(r"\n  email-clashes: (\d+) ", out).group(1))
    settled = query(migrated["url"], "SELECT count(DISTINCT lower(email)) "
                    "FROM datagovuk.email_clash_resolutions")[0][0]
    assert listed == settled >= 1
    assert "needs a decision" not in out


def test_by_default_the_report_is_short_and_ends_with_the_table(
        migrated_with_paster):
    out = migrated_with_paster["result"].stdout
    lines = out.splitlines()
    assert len(lines) <= 45, out
    assert not re.search(r"\n  core \w+ ", out), out
    assert "schema version: legacy 71 -> alembic " in out
    assert "Data migrations: 001_bytemark_to_govuk.sql" in out
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].startswith("pre-flight: done in ")
    assert any(line.startswith("total: ") and line.endswith(" ok")
               for line in table)
    # The next steps name the config in use, not a placeholder.
    assert f"ckan -c {TEST_INI} datagovuk promote --demoted" in out
    assert "CKAN_INI" not in out
    assert "ckan.storage_path" not in out        # a note: -v only


@pytest.mark.parametrize("which", ["ckan", "paster"])
def test_ckan_db_check_passes(which, migrated, migrated_with_paster):
    url = (migrated if which == "ckan" else migrated_with_paster)["url"]
    result = db_check(url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Database schema is up to date" in result.stdout


@pytest.mark.parametrize("which", ["ckan", "paster"])
def test_public_schema_equals_a_fresh_ckan_db_init(which, migrated,
                                                   migrated_with_paster,
                                                   fresh_schema):
    url = (migrated if which == "ckan" else migrated_with_paster)["url"]
    assert dump_database(url, "-s", "-n", "public") == fresh_schema


def test_legacy_tables_are_archived_with_all_their_rows(migrated):
    url, before = migrated["url"], migrated["before"]
    for table, rows in before["dgu_rows"].items():
        assert query(url, f'SELECT count(*) FROM datagovuk_legacy."{table}"'
                     )[0][0] == rows, table
    assert query(url, "SELECT count(*) FROM datagovuk_legacy.revision"
                 )[0][0] == before["revisions"]
    assert query(url, "SELECT count(*) FROM datagovuk_legacy.related"
                 )[0][0] == before["related"] > 0
    # the copy holds the extras as they were, before the NULL fix
    assert query(url, """
        SELECT e.value IS NULL FROM datagovuk_legacy.package_extra e
        JOIN package p ON p.id = e.package_id
        WHERE p.name = %s AND e.key = %s""",
        (KNOWN.null_extra_dataset, KNOWN.null_extra_key)) == [(True,)]
    public = {row[0] for row in query(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert not public & set(archive.DGU_TABLES + archive.HARVEST_TABLES)
    # no foreign key from the archive into the live schema
    assert query(url, """
        SELECT count(*) FROM pg_constraint c
        JOIN pg_class s ON s.oid = c.conrelid
        JOIN pg_namespace n ON n.oid = s.relnamespace
        JOIN pg_class t ON t.oid = c.confrelid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE c.contype = 'f' AND n.nspname <> tn.nspname""")[0][0] == 0


def test_the_archive_holds_the_history_as_it_was_before_the_data_migration(
        migrated):
    url, before = migrated["url"], migrated["before"]
    archived = {table: query(
        url, f'SELECT count(*) FROM datagovuk_legacy."{table}"')[0][0]
        for table in before["history_rows"]}
    assert archived == before["history_rows"]
    # rows 001 deletes from the live tables, there as they were
    for table in ("package_tag_revision", "tag", "user_object_role",
                  "package_role", "package_extra_revision"):
        assert archived[table] > 0, table
    assert query(url, "SELECT count(*) FROM datagovuk_legacy.package_extra "
                      "WHERE key IN ('schema', 'individual_resources')"
                 )[0][0] > 0
    # ... and still deleted from the live tables
    assert query(url, "SELECT count(*) FROM tag")[0][0] == 0
    assert query(url, "SELECT count(*) FROM package_tag")[0][0] == 0


def test_every_active_dataset_keeps_its_active_resources(migrated):
    url, before = migrated["url"], migrated["before"]
    after = dict(query(url, "SELECT id, name FROM package "
                            "WHERE state = 'active'"))
    assert after == before["active_datasets"]
    attached = set(query(url, "SELECT package_id, id FROM resource "
                              "WHERE state = 'active'"))
    assert before["resources"] and before["resources"] <= attached
    viewers = query(url, "SELECT count(*) FROM resource WHERE state = "
                         "'active' AND description = 'Organogram viewer'")
    assert viewers[0][0] == 0


def test_extras_are_mapped_into_the_extras_json(migrated):
    url, before = migrated["url"], migrated["before"]
    after = {package_id: extras or {} for package_id, extras in query(
        url, "SELECT id, extras FROM package WHERE state = 'active'")}
    mapped = 0
    for package_id, old in before["extras"].items():
        assert after[package_id] == expected_extras(old), package_id
        mapped += "theme-primary" in old
    assert mapped > 0


def test_no_tag_is_left(migrated):
    assert query(migrated["url"], "SELECT (SELECT count(*) FROM tag) + "
                 "(SELECT count(*) FROM package_tag)")[0][0] == 0


def test_users_publishers_kept_others_gone_names_valid(migrated):
    url, before = migrated["url"], migrated["before"]
    ids = set(row[0] for row in query(url, 'SELECT id FROM "user"'))
    gone = [KNOWN.non_publishing_user_d, *KNOWN.non_publishing_with_history]
    for name in gone:
        assert before["users"][name] not in ids, name
    for name in (KNOWN.publishing_admin, KNOWN.publishing_editor,
                 KNOWN.deleted_membership_only, *KNOWN.same_fullname_users):
        assert before["users"][name] in ids, name
    names = [row[0] for row in query(url, 'SELECT name FROM "user"')]
    assert len(names) == len(set(names))
    # the site user is named by ckan.site_id, which CKAN never validates
    assert all(VALID_USER_NAME.match(name) for name in names
               if name != KNOWN.site_user), names


def test_only_the_site_user_is_still_a_sysadmin(migrated):
    sysadmins = {row[0] for row in query(
        migrated["url"], 'SELECT name FROM "user" WHERE sysadmin')}
    assert sysadmins == {KNOWN.site_user}
    demoted = {row[0] for row in query(
        migrated["url"], "SELECT user_id FROM datagovuk.demoted_sysadmins")}
    users = migrated["before"]["users"]
    assert {users[name] for name in KNOWN.sysadmins
            if name != KNOWN.site_user} <= demoted


def test_harvest_sources_renamed_and_the_duplicate_gone(migrated):
    url, before = migrated["url"], migrated["before"]
    sources = dict(query(url, "SELECT id, type FROM "
                              "datagovuk_legacy.harvest_source"))
    assert KNOWN.duplicate_harvest_source_id in before["harvest_sources"]
    assert set(sources) == set(before["harvest_sources"]) - {
        KNOWN.duplicate_harvest_source_id}
    assert set(sources.values()) <= NEW_HARVEST_TYPES
    dkan = query(url, "SELECT url FROM datagovuk_legacy.harvest_source "
                      "WHERE url LIKE %s", (KNOWN.dkan_source_url + "%",))
    assert dkan and all(row[0].endswith("/data.json") for row in dkan)


SHOW_SCRIPT = textwrap.dedent("""
    import json, sys
    from ckan.cli import load_config
    from ckan.config.middleware import make_app
    import ckan.plugins.toolkit as toolkit
    app = make_app(load_config(sys.argv[1]))
    with app._wsgi_app.test_request_context():
        dataset = toolkit.get_action("package_show")(
            {"ignore_auth": True}, {"id": sys.argv[2]})
        user = toolkit.get_action("user_show")(
            {"ignore_auth": True}, {"id": sys.argv[3]})
    print(json.dumps({"dataset": dataset, "user": user}, default=str))
""")


def test_package_show_and_user_show_return_migrated_records(migrated):
    url = migrated["url"]
    name, package_id = query(url, """
        SELECT p.name, p.id FROM package p WHERE p.state = 'active'
          AND p.extras ? 'schema-vocabulary' ORDER BY p.name LIMIT 1""")[0]
    user_id = migrated["before"]["users"][KNOWN.publishing_admin]
    result = run_command(["python", "-c", SHOW_SCRIPT, TEST_INI, name,
                          user_id], db_url=url)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.splitlines()[-1])
    dataset = shown["dataset"]
    assert dataset["id"] == package_id and dataset["tags"] == []
    extras = {extra["key"]: extra["value"] for extra in dataset["extras"]}
    assert "schema-vocabulary" in extras and "schema" not in extras
    expected = {rid for pid, rid in migrated["before"]["resources"]
                if pid == package_id}
    assert {resource["id"] for resource in dataset["resources"]} == expected
    assert shown["user"]["id"] == user_id
    assert VALID_USER_NAME.match(shown["user"]["name"])


def migrate_in_process(url: str, **options) -> migrate.MigrationReport:
    """The command's module, called as the command calls it (quicker than
    a CKAN process for the cases the command adds nothing to)."""
    return migrate.migrate(url, [], runner.settings_from_config(),
                           migrate.MigrationOptions(**options))


def test_running_migrate_again_changes_nothing(migrated):
    url = migrated["url"]
    before = dump_database(url)
    report = migrate_in_process(url)
    assert report.outcome == "committed" and not report.data_migrations
    assert report.upgrade.revisions == []
    assert report.schema_before == report.schema_after
    assert dump_database(url) == before


# --- Failures leave everything as it was --------------------------------------

def assert_untouched(url: str, before: str, result) -> str:
    message = one_line_error(result)
    assert dump_database(url) == before
    return message


def a_site_migration(tmp_path, name: str, statement: str) -> str:
    """A --migrations-dir holding the shipped 001 and a site's own ``name``."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    shipped = os.path.join(os.path.dirname(migrate.__file__), "migrations",
                           "001_bytemark_to_govuk.sql")
    (migrations / "001_bytemark_to_govuk.sql").write_bytes(
        open(shipped, "rb").read())
    (migrations / name).write_text(statement)
    return str(migrations)


def test_a_broken_data_migration_changes_nothing(old_site, tmp_path):
    migrations = a_site_migration(
        tmp_path, "002_broken.sql", "UPDATE package SET title = 'changed';\n"
        "SELECT no_such_column FROM package;\n")
    before = dump_database(old_site)
    result = ckan_datagovuk(MIGRATE + ["--migrations-dir", migrations],
                            db_url=old_site)
    message = assert_untouched(old_site, before, result)
    assert "002_broken.sql" in message and "no_such_column" in message
    assert "rolled back" in message


def test_a_failing_upgrade_changes_nothing_ledger_included(old_site):
    # A fork's schema that lacks a constraint revision 093 drops: the
    # upgrade fails after 001 and the archive have run.
    conn = db.connect(old_site)
    with conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE package DROP CONSTRAINT "
                    "package_revision_id_fkey")
    conn.close()
    before = dump_database(old_site)
    result = ckan_datagovuk(MIGRATE, db_url=old_site)
    message = assert_untouched(old_site, before, result)
    assert "schema upgrade failed" in message
    assert "package_revision_id_fkey" in message
    assert not query(old_site, "SELECT to_regclass("
                     "'datagovuk.applied_migrations')")[0][0]


def test_dry_run_changes_nothing_and_prints_the_report(old_site):
    before = dump_database(old_site)
    result = ckan_datagovuk(MIGRATE + ["--dry-run"], db_url=old_site)
    assert result.returncode == 0, result.stderr
    assert "dry run: rolled back, nothing changed" in result.stdout
    assert "-> alembic " in result.stdout and "Counts" in result.stdout
    # verify's database checks run in the transaction rolled back too
    assert "Verify: every check holds (8 database checks before the " \
        "commit; no API sample: nothing committed)" in result.stdout
    assert dump_database(old_site) == before


def test_clashing_emails_stop_before_anything_changes(old_site):
    users = dict(query(old_site, 'SELECT name, id FROM "user"'))
    before = dump_database(old_site)
    with pytest.raises(OperatorError) as raised:
        migrate_in_process(old_site)
    message = str(raised.value)
    assert "\n" not in message
    assert dump_database(old_site) == before
    for name in KNOWN.email_case_clash_kept_pair:
        assert users[name] in message
    # the other pair is resolved by 001 deleting its non-publishing user
    assert users[KNOWN.email_case_clash_deleted_vs_kept[1]] not in message
    assert "--resolve-email-clash keep-oldest" in message


def test_a_site_without_harvest_tables_migrates_too(old_site_no_harvest):
    report = migrate_in_process(old_site_no_harvest,
                                resolve_email_clash="keep-oldest")
    assert report.outcome == "committed"
    assert report.schema_after.endswith("(head)")
    moved = {table.name for table in report.archive.named("moved")}
    assert moved == set(archive.DGU_TABLES)


def test_skip_upgrade_commits_the_data_migrations_only(old_site):
    tags = query(old_site, "SELECT count(*) FROM tag")[0][0]
    report = migrate_in_process(old_site, skip_upgrade=True).to_dict()
    assert report["schema_after"] == "legacy 71"
    assert report["upgrade"] is None
    # the archive's copy is taken before the data migrations all the same
    copied = {table["name"]: table["rows"]
              for table in report["archive"]["tables"]}
    assert copied["tag"] == tags > 0
    assert set(copied) == {*archive.DROPPED_BY_UPGRADE, *archive.TAG_TABLES}
    assert query(old_site, "SELECT count(*) FROM datagovuk_legacy.tag"
                 )[0][0] == tags
    assert [m["name"] for m in report["data_migrations"]] == [
        "001_bytemark_to_govuk.sql"]
    assert query(old_site, "SELECT count(*) FROM tag")[0][0] == 0
    assert query(old_site, "SELECT filename FROM datagovuk.applied_migrations"
                 ) == [("001_bytemark_to_govuk.sql",)]


# --- migrate_version shared with other extensions (issue 15, item 1) -------

def test_ckans_row_is_read_when_another_extensions_row_comes_first(old_site):
    put_another_extensions_row_first(old_site)
    report = migrate_in_process(old_site, resolve_email_clash="keep-oldest")
    assert report.schema_before == "legacy 71"
    assert report.schema_after.endswith("(head)")
    # The other extension's row outlives revision 090, in the archive.
    assert query(old_site, "SELECT * FROM datagovuk_legacy.migrate_version"
                 ) == [DOI_MIGRATE_VERSION_ROW]
    assert query(old_site, "SELECT to_regclass('public.migrate_version')"
                 ) == [(None,)]
    assert report.archive.migrate_version_rows == 1
    assert "moved 1 other extensions' row(s) of migrate_version" in \
        report.to_text()


def test_after_skip_upgrade_ckan_reads_its_own_row_and_a_second_migrate_keeps_the_first_copies(
        old_site):
    put_another_extensions_row_first(old_site)
    tags = query(old_site, "SELECT count(*) FROM tag")[0][0]
    migrate_in_process(old_site, skip_upgrade=True)
    # What CKAN 2.12's Repository.setup_migration_version_control reads
    # (the first row) before a `ckan db upgrade`.
    assert query(old_site, "select version from migrate_version") == [(71,)]
    assert query(old_site, "SELECT * FROM datagovuk_legacy.migrate_version"
                 ) == [DOI_MIGRATE_VERSION_ROW]
    report = migrate_in_process(old_site, resolve_email_clash="keep-oldest")
    assert report.schema_after.endswith("(head)")
    assert query(old_site, "SELECT count(*) FROM datagovuk_legacy.tag"
                 )[0][0] == tags > 0


def test_two_rows_that_look_like_ckans_are_refused_in_one_line(old_site):
    query(old_site, "INSERT INTO migrate_version VALUES "
          "('ckan-2.1', '/srv/ckan/ckan/migration', 70)")
    before = dump_database(old_site)
    message = assert_untouched(old_site, before,
                               ckan_datagovuk(MIGRATE, db_url=old_site))
    assert "2 rows that look like CKAN's" in message


def test_a_second_migrate_refuses_while_one_runs(old_site):
    holder = db.connect(old_site)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)",
                        (migrate.LOCK_KEY,))
        before = dump_database(old_site)
        with pytest.raises(OperatorError,
                           match="another `datagovuk migrate` is running"):
            migrate_in_process(old_site)
        assert dump_database(old_site) == before
    finally:
        holder.rollback()
        holder.close()


def test_an_empty_database_is_refused(make_database):
    url = make_database()
    assert "is empty" in one_line_error(ckan_datagovuk(["migrate"],
                                                       db_url=url))


def test_a_database_that_is_not_ckan_is_refused(make_database):
    url = make_database()
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE invoices (id int PRIMARY KEY)")
    conn.close()
    message = one_line_error(ckan_datagovuk(["migrate"], db_url=url))
    assert "not a CKAN database" in message and "invoices" in message


def test_paster_without_config_is_one_line():
    result = run_command(["paster", "datagovuk", "migrate"], cwd="/",
                         env={"CKAN_INI": ""})
    assert "no CKAN config" in one_line_error(result)


def test_paster_with_an_unreachable_database_is_one_line():
    result = paster_datagovuk(
        ["migrate"], db_url="postgresql://ckan_default:secret@127.0.0.1:1/x")
    message = one_line_error(result)
    assert "cannot connect to the database" in message
    assert "secret" not in message


def test_sigterm_part_way_rolls_everything_back(old_site):
    before = dump_database(old_site)
    env = dict(os.environ, CKAN_SQLALCHEMY_URL=old_site)
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ckan"), "-c",
         TEST_INI, "datagovuk", *MIGRATE], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stdout:
        if line.startswith("upgrade fixes ..."):  # after 001 and the archive
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=600)
    result = subprocess.CompletedProcess(process.args, process.returncode,
                                         stdout, stderr)
    message = assert_untouched(old_site, before, result)
    assert "stopped by SIGTERM" in message and "rolled back" in message


def test_tables_without_planner_statistics_are_analyzed_in_the_transaction(
        old_site, pg_admin_url):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    # As after a restore: no statistics at all.
    admin_execute(db.with_database(pg_admin_url, db.parse(old_site).database),
                  "DELETE FROM pg_statistic")
    engine = create_engine(old_site, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            with conn.begin() as transaction:
                analyzed = migrate.analyze_tables_without_statistics(conn)
                assert {"package", "package_revision", "resource",
                        "user"} <= set(analyzed)
                assert migrate.analyze_tables_without_statistics(conn) == []
                assert conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stats WHERE tablename = "
                    "'package_revision'").scalar() > 0
                transaction.rollback()
            # Like everything in the run, a rollback takes them back.
            with conn.begin():
                assert set(migrate.analyze_tables_without_statistics(conn)) \
                    == set(analyzed)
    finally:
        engine.dispose()


# --- verify of the move (issue 18, item 3) ----------------------------------

def test_a_clean_migration_is_verified_before_and_after_the_commit(
        migrated, migrated_with_paster):
    for result in (migrated["result"], migrated_with_paster["result"]):
        out = result.stdout
        assert re.search(r"^Verify: every check holds \(8 database checks "
                         r"before the commit; the API sample \(seed \d+\) "
                         r"after the commit\)$", out, re.M), out
        table = out.split("\n\n")[-1]
        assert re.search(r"^verify: done in [\d.]+ s +8 database checks "
                         r"hold$", table, re.M), table
        assert re.search(r"^API sample: done in [\d.]+ s +ok$", table,
                         re.M), table
        # verified already: not a next step
        assert "datagovuk verify" not in out
    # -v: each check's line
    assert re.search(r"^  resources: \d+ active resources .*: ok$",
                     migrated["result"].stdout, re.M)


# CKAN reads the resource's extras column as JSON when it serves the
# dataset; none of verify's database checks compares it.
BREAK_A_RESOURCE = """
UPDATE resource SET extras = '{broken' WHERE id = (
    SELECT r.id FROM resource r
    JOIN resource_group g ON g.id = r.resource_group_id
    JOIN package p ON p.id = g.package_id
    WHERE r.state = 'active' AND p.state = 'active'
      AND r.description IS DISTINCT FROM 'Organogram viewer'
    ORDER BY p.name, r.id LIMIT 1);
"""


@pytest.mark.parametrize("command", [ckan_datagovuk, paster_datagovuk],
                         ids=["ckan", "paster"])
def test_an_api_sample_failure_after_the_commit_says_so_and_exits_1(
        command, old_site, tmp_path):
    name = query(old_site, """
        SELECT p.name FROM resource r
        JOIN resource_group g ON g.id = r.resource_group_id
        JOIN package p ON p.id = g.package_id
        WHERE r.state = 'active' AND p.state = 'active'
          AND r.description IS DISTINCT FROM 'Organogram viewer'
        ORDER BY p.name, r.id LIMIT 1""")[0][0]
    migrations = a_site_migration(tmp_path, "002_break_a_resource.sql",
                                  BREAK_A_RESOURCE)
    result = command(MIGRATE + ["--migrations-dir", migrations,
                                "--verify-sample", "1000"], db_url=old_site)
    message = one_line_error(result)
    assert message.startswith("Error: committed; API sample failed: 1 "
                              "difference(s) in API sample; first: "
                              f"dataset {name}: package_show: expected "
                              "'served'"), message
    out = result.stdout
    assert ": committed; API sample failed; schema version" in out
    assert f"[API sample] dataset {name}: package_show: expected " \
        "'served', found" in out
    assert re.search(r"^API sample: failed after [\d.]+ s|^API sample: "
                     r"done in [\d.]+ s +failed$", out, re.M), out
    # committed all the same
    assert query(old_site, "SELECT filename FROM datagovuk.applied_"
                 "migrations ORDER BY 1") == [
        ("001_bytemark_to_govuk.sql",), ("002_break_a_resource.sql",)]


def test_no_verify_with_verify_sample_is_a_usage_error(old_site):
    before = dump_database(old_site)
    result = ckan_datagovuk(MIGRATE + ["--no-verify", "--verify-sample",
                                       "5"], db_url=old_site)
    assert result.returncode == 2
    assert "--verify-sample does not go with --no-verify" in \
        one_line_error(result)
    assert dump_database(old_site) == before
