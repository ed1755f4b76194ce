"""Pre-flight: what the database is, refusals, and the traps of CKAN's
upgrade found and fixed (real PostgreSQL, the generated old site)."""
from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import db, oldsite, preflight, upgrade
from ckanext.datagovuk.errors import OperatorError

KNOWN = oldsite.KNOWN_CASES


@pytest.fixture
def engine_for():
    engines = []

    def make(url):
        engine = create_engine(url, poolclass=NullPool)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def test_an_empty_database_is_classified_and_refused(make_database,
                                                     engine_for):
    with engine_for(make_database()).connect() as conn:
        assert preflight.classify(conn).kind == "empty"
        with pytest.raises(OperatorError, match="is empty: import") as raised:
            preflight.check(conn)
    assert "\n" not in str(raised.value)


def test_a_database_that_is_not_ckan_is_refused(make_database, engine_for):
    with engine_for(make_database()).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id int)")
        assert preflight.classify(conn).kind == "not-ckan"
        with pytest.raises(OperatorError, match="not a CKAN database.*"
                                                "invoices"):
            preflight.check(conn)


def test_the_old_site_is_legacy_71(old_site, engine_for):
    with engine_for(old_site).connect() as conn:
        state = preflight.check(conn, ["001_bytemark_to_govuk.sql"])
    assert (state.kind, state.legacy_version) == ("legacy", 71)
    assert "legacy sqlalchemy-migrate version 71" in state.describe()


def test_pending_001_on_a_database_at_head_is_refused(make_database,
                                                      ckan_head_template,
                                                      engine_for):
    url = make_database(template=ckan_head_template)
    with engine_for(url).connect() as conn:
        state = preflight.check(conn, [])     # nothing pending: fine
        assert state.at_head
        with pytest.raises(OperatorError, match="001_bytemark_to_govuk.sql "
                           "is pending.*head.*resource_group"):
            preflight.check(conn, ["001_bytemark_to_govuk.sql"])


def trap_names(traps):
    return {trap.name for trap in traps}


def test_the_old_sites_traps_are_found_without_changing_anything(
        old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        traps = preflight.find_traps(conn)
    names = trap_names(traps)
    assert {"null-package_extra-values", "null-group_extra-values",
            "orphan-resources", "related-items", "email-clashes"} <= names
    for index in oldsite.CONTINUITY_INDEXES:
        assert f"existing-index-{index}" in names


def test_fixes_remove_the_traps_and_the_upgrade_then_succeeds(old_site,
                                                             engine_for):
    engine = engine_for(old_site)
    with engine.begin() as conn:
        fixes = preflight.fix_traps(conn, [], "keep-oldest")
        left = trap_names(preflight.find_traps(conn))
        # orphans and related rows are dealt with by upgrade and archive
        assert left == {"orphan-resources", "related-items"}
        cleared = conn.exec_driver_sql(
            "SELECT user_id, kept_by FROM datagovuk.email_clash_resolutions"
        ).all()
        from ckanext.datagovuk import archive
        archive.archive(conn, [])
        upgrade.upgrade(conn)
    assert {fix.name for fix in fixes} >= {
        "null-package_extra-values", "email-clashes"}
    assert len(cleared) == 2        # one per clashing pair on the raw site


def test_clashing_emails_need_a_decision(old_site, engine_for):
    with engine_for(old_site).connect() as conn:
        users = dict(conn.exec_driver_sql(
            'SELECT name, id FROM "user"').all())
        conn.rollback()
        with pytest.raises(preflight.EmailClashError) as raised:
            with conn.begin():
                preflight.fix_traps(conn)
    message = str(raised.value)
    assert "\n" not in message
    for name in KNOWN.email_case_clash_kept_pair:
        assert users[name] in message
    assert "--resolve-email-clash keep-oldest" in message


def test_blank_emails_of_active_users_become_null(old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql(
            "UPDATE \"user\" SET email = '' WHERE id IN (SELECT id FROM "
            "\"user\" WHERE state = 'active' ORDER BY id LIMIT 3)")
        assert "blank-emails" in trap_names(preflight.find_traps(conn))
        fixes = preflight.fix_traps(conn, [], "keep-oldest")
        assert [fix.rows for fix in fixes if fix.name == "blank-emails"] \
            == [3]
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM \"user\" WHERE email = ''").scalar() == 0


def test_a_table_the_upgrade_creates_is_moved_out_of_the_way(old_site,
                                                            engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE resource_view (id text)")
        assert "existing-table-resource_view" in trap_names(
            preflight.find_traps(conn))
        preflight.fix_traps(conn, [], "keep-oldest")
        assert conn.exec_driver_sql(
            "SELECT to_regclass('datagovuk_legacy.resource_view') IS NOT NULL"
        ).scalar()


def test_tracking_duplicates_are_removed_before_its_primary_key(
        old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tracking_raw (user_key, url, tracking_type, "
            "access_timestamp) VALUES ('k', '/d', 'page', '2017-01-01'), "
            "('k', '/d', 'page', '2017-01-01')")
        assert "tracking-raw-duplicates" not in trap_names(
            preflight.find_traps(conn))          # plugin not enabled
        assert "tracking-raw-duplicates" in trap_names(
            preflight.find_traps(conn, ["tracking"]))
        preflight.fix_traps(conn, ["tracking"], "keep-oldest")
        from ckanext.datagovuk import archive
        archive.archive(conn, ["tracking"])
        result = upgrade.upgrade(conn, ["tracking"])
    assert "tracking" in result.plugins


def test_an_extension_the_server_lacks_is_named_with_its_package(
        make_database, engine_for, tmp_path):
    url = make_database()
    with engine_for(url).begin() as conn:
        available = set(conn.exec_driver_sql(
            "SELECT name FROM pg_available_extensions").scalars())
        if "postgis" in available:
            pytest.skip("this server has PostGIS")
        conn.exec_driver_sql("CREATE EXTENSION citext")
        assert preflight.unavailable_extensions(conn) == []
        missing = preflight.unavailable_extensions(conn, ["postgis"])
        message = preflight.missing_extensions_message(conn, missing)
    assert missing == ["postgis"]
    major = message.split("postgresql-")[1].split("-")[0]
    assert f"postgresql-{major}-postgis-3" in message and major.isdigit()
    dump = str(tmp_path / "ext.dump")
    subprocess.run(["pg_dump", "-Fc", "-f", dump], env=db.libpq_env(url),
                   check=True)
    assert preflight.extensions_in_dump(dump) == ["citext"]
