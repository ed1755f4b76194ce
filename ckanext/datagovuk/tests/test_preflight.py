"""Pre-flight: what the database is, and the refusals (real PostgreSQL,
the generated old site)."""
from __future__ import annotations

import subprocess

import pytest

from ckanext.datagovuk import db, preflight
from ckanext.datagovuk.errors import OperatorError


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
