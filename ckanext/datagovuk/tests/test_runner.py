"""The migration runner on a real PostgreSQL: ordering, the ledger, re-runs,
changed files, failures and the settings it hands to the SQL."""
from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
from sqlalchemy import create_engine, text

from ckanext.datagovuk import db, runner
from ckanext.datagovuk.errors import OperatorError


@pytest.fixture
def engine(make_database):
    engine = create_engine(make_database())
    yield engine
    engine.dispose()


def write(folder, name: str, sql: str) -> str:
    path = os.path.join(str(folder), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(sql)
    return path


def apply(engine, folder, settings=None, commit=True):
    with engine.connect() as connection:
        applied = runner.apply_pending(connection, str(folder), settings=settings)
        if commit:
            connection.commit()
        else:
            connection.rollback()
    return applied


def ledger(engine) -> list[tuple]:
    with engine.connect() as connection:
        if not runner.ledger_exists(connection):
            return []
        return [tuple(row) for row in connection.execute(text(
            "SELECT filename, checksum, applied_at, duration_seconds "
            "FROM datagovuk.applied_migrations ORDER BY filename"))]


def rows(engine, statement: str) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(statement))]


def dump(engine) -> str:
    result = subprocess.run(["pg_dump", "--no-owner", "--no-acl"],
                            env=db.libpq_env(engine.url), text=True,
                            capture_output=True, check=True, timeout=120)
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def log(name: str) -> str:
    """SQL that records ``name`` after what is already recorded (no serial:
    sequences do not roll back, and the tests compare dumps)."""
    return ("INSERT INTO applied_order (position, name) "
            f"SELECT count(*), '{name}' FROM applied_order;\n")


@pytest.fixture
def three_files(tmp_path):
    """Three migrations that log their order, in a folder with noise."""
    write(tmp_path, "010_third.sql", log("010"))
    write(tmp_path, "002_second.sql",
          log("002") + "-- a percent sign must reach PostgreSQL as it is\n"
          + log("like").replace("FROM applied_order;",
                                "FROM applied_order WHERE 'a%b' LIKE 'a%';"))
    write(tmp_path, "001_first.sql",
          "CREATE TABLE applied_order (position int, name text);\n" + log("001"))
    write(tmp_path, "README.md", "not a migration")
    write(tmp_path, "1_too_short.sql", "SELECT broken syntax here;")
    write(tmp_path, "003_notes.txt", "SELECT broken syntax here;")
    return tmp_path


def test_discover_orders_by_number_and_ignores_other_files(three_files):
    files = runner.discover(str(three_files))
    assert [migration.name for migration in files] == [
        "001_first.sql", "002_second.sql", "010_third.sql"]
    with open(files[0].path, "rb") as handle:
        assert files[0].checksum == hashlib.sha256(handle.read()).hexdigest()


def test_discover_refuses_a_missing_folder_and_shared_numbers(tmp_path):
    with pytest.raises(OperatorError, match="does not exist"):
        runner.discover(str(tmp_path / "nowhere"))
    write(tmp_path, "001_a.sql", "SELECT 1;")
    write(tmp_path, "001_b.sql", "SELECT 1;")
    with pytest.raises(OperatorError, match="001_a.sql and 001_b.sql"):
        runner.discover(str(tmp_path))


def test_default_folder_is_the_packages_migrations():
    files = runner.discover()
    assert files[0].name == "001_bytemark_to_govuk.sql"
    assert os.path.dirname(files[0].path) == runner.DEFAULT_MIGRATIONS_DIR
    # the top-level migrations/ of the repository is the same folder
    top = os.path.join(runner.DEFAULT_MIGRATIONS_DIR, "..", "..", "..", "migrations")
    assert os.path.realpath(top) == os.path.realpath(runner.DEFAULT_MIGRATIONS_DIR)


def test_pending_files_apply_in_order_and_are_recorded(engine, three_files):
    applied = apply(engine, three_files)
    assert [migration.name for migration in applied] == [
        "001_first.sql", "002_second.sql", "010_third.sql"]
    assert rows(engine, "SELECT name FROM applied_order ORDER BY position") == [
        ("001",), ("002",), ("like",), ("010",)]
    recorded = ledger(engine)
    files = {migration.name: migration for migration in runner.discover(str(three_files))}
    assert [entry[0] for entry in recorded] == list(files)
    for name, checksum, applied_at, duration in recorded:
        assert checksum == files[name].checksum
        assert applied_at is not None and applied_at.tzinfo is not None
        assert 0 <= duration < 60
    assert all(migration.duration_seconds >= 0 for migration in applied)


def test_a_second_run_applies_nothing_and_changes_nothing(engine, three_files):
    apply(engine, three_files)
    before = dump(engine)
    assert apply(engine, three_files) == []
    assert dump(engine) == before


def test_only_new_files_apply_later(engine, three_files):
    apply(engine, three_files)
    write(three_files, "011_fourth.sql", log("011"))
    applied = apply(engine, three_files)
    assert [migration.name for migration in applied] == ["011_fourth.sql"]
    assert len(ledger(engine)) == 4


def test_a_changed_applied_file_is_refused_by_name(engine, three_files):
    apply(engine, three_files)
    write(three_files, "002_second.sql", "SELECT 'edited';")
    write(three_files, "011_fourth.sql", log("011"))
    before = dump(engine)
    with pytest.raises(OperatorError) as raised:
        apply(engine, three_files)
    assert "002_second.sql has changed since it was applied" in str(raised.value)
    assert dump(engine) == before   # not even the new file ran


def test_a_broken_file_leaves_database_and_ledger_unchanged(engine, three_files):
    apply(engine, three_files)
    # 011 works, 012 fails halfway: both must be rolled back
    write(three_files, "011_fine.sql", log("011"))
    write(three_files, "012_broken.sql",
          log("012") +
          "UPDATE applied_order SET name = 'changed';\n"
          "SELECT * FROM no_such_table;\n")
    before = dump(engine)
    ledger_before = ledger(engine)
    with pytest.raises(OperatorError) as raised:
        apply(engine, three_files)
    message = str(raised.value)
    assert message == ('migration 012_broken.sql failed: ERROR:  relation '
                       '"no_such_table" does not exist')
    assert dump(engine) == before
    assert ledger(engine) == ledger_before


def test_the_runner_never_commits(engine, three_files):
    applied = apply(engine, three_files, commit=False)
    assert len(applied) == 3
    assert ledger(engine) == []
    assert rows(engine, "SELECT to_regclass('applied_order')::text") == [(None,)]
    assert rows(engine, "SELECT to_regnamespace('datagovuk')::text") == [(None,)]


def test_a_file_that_ends_the_transaction_is_refused(engine, tmp_path):
    write(tmp_path, "001_commits.sql",
          "CREATE TABLE escaped (id int);\nCOMMIT;\nCREATE TABLE later (id int);")
    with pytest.raises(OperatorError, match="001_commits.sql contains COMMIT"):
        apply(engine, tmp_path)
    assert rows(engine, "SELECT to_regclass('escaped')::text") == [(None,)]
    # BEGIN/END inside DO blocks and strings are fine
    write(tmp_path, "001_commits.sql",
          "DO $$ BEGIN PERFORM 1; END $$;\nSELECT 'COMMIT;';\n-- COMMIT;\n")
    assert len(apply(engine, tmp_path)) == 1


def test_migrations_dir_replaces_the_default_and_shares_the_ledger(engine, tmp_path):
    # a site's own folder: a file named like a package migration must match
    # the checksum recorded for it
    first = tmp_path / "site"
    first.mkdir()
    write(first, "001_bytemark_to_govuk.sql", "SELECT 1;")
    assert [m.name for m in apply(engine, first)] == ["001_bytemark_to_govuk.sql"]
    with engine.connect() as connection:
        with pytest.raises(OperatorError, match="001_bytemark_to_govuk.sql has changed"):
            runner.pending(connection, runner.discover())
    # files applied from elsewhere and absent here are not a problem
    second = tmp_path / "other"
    second.mkdir()
    write(second, "005_other.sql", "SELECT 1;")
    assert [m.name for m in apply(engine, second)] == ["005_other.sql"]
    assert [entry[0] for entry in ledger(engine)] == [
        "001_bytemark_to_govuk.sql", "005_other.sql"]


def test_settings_reach_the_sql_and_step_notices_come_back(engine, tmp_path):
    write(tmp_path, "001_report.sql", """
        CREATE TABLE seen AS SELECT
            current_setting('datagovuk.keep_sysadmins', true) AS keep,
            current_setting('datagovuk.site_user', true) AS site_user;
        DO $$
        BEGIN
            RAISE NOTICE 'step 1: rows counted: %', 7;
            RAISE NOTICE 'something else';
            FOR i IN 2..70 LOOP
                RAISE NOTICE 'step %: filler', i;
            END LOOP;
        END $$;""")
    settings = runner.settings_from_config({
        "ckanext.datagovuk.keep_sysadmins": "alice bob",
        "ckanext.datagovuk.organogram_base_url": "https://example.org/",
        "ckan.site_id": "dgu"})
    assert settings == {"datagovuk.keep_sysadmins": "alice,bob",
                        "datagovuk.organogram_base_url": "https://example.org/",
                        "datagovuk.site_user": "dgu"}
    [applied] = apply(engine, tmp_path, settings=settings)
    assert rows(engine, "SELECT keep, site_user FROM seen") == [("alice,bob", "dgu")]
    assert applied.steps[0] == runner.StepNotice(1, "rows counted", 7)
    # psycopg2 keeps only 50 notices by itself; the runner keeps them all
    assert len(applied.steps) == 70
    assert applied.steps[-1] == runner.StepNotice(70, "filler", None)
    assert "something else" in applied.notices[1]
    # set_config(..., true): the settings end with the transaction
    with engine.connect() as connection:
        assert connection.execute(text(
            "SELECT coalesce(current_setting('datagovuk.site_user', true), '')")
        ).scalar() == ""


def test_settings_from_config_defaults():
    settings = runner.settings_from_config({})
    assert settings == {"datagovuk.keep_sysadmins": "",
                        "datagovuk.organogram_base_url": "",
                        "datagovuk.site_user": ""}


def test_parse_step_notices():
    notices = ["NOTICE:  step 1: tag rows deleted: 12\n",
               "NOTICE:  table \"x\" does not exist, skipping\n",
               "NOTICE:  step 4: URLs rewritten (skipped: no base URL): 0\n",
               "WARNING:  step 6: the site user x is not a sysadmin\n"]
    assert runner.parse_step_notices(notices) == [
        runner.StepNotice(1, "tag rows deleted", 12),
        runner.StepNotice(4, "URLs rewritten (skipped: no base URL)", 0),
        runner.StepNotice(6, "the site user x is not a sysadmin", None)]
    assert str(runner.StepNotice(1, "tag rows deleted", 12)) == "step 1: tag rows deleted: 12"


def test_notices_come_back_even_when_the_session_hides_them(engine, tmp_path):
    write(tmp_path, "001_report.sql",
          "DO $$ BEGIN RAISE NOTICE 'step 1: rows counted: %', 3; END $$;")
    with engine.connect() as connection:
        connection.exec_driver_sql("SET client_min_messages = warning")
        [applied] = runner.apply_pending(connection, str(tmp_path))
        connection.rollback()
    assert applied.steps == [runner.StepNotice(1, "rows counted", 3)]
