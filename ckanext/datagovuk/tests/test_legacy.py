"""CKAN's row of ``migrate_version``, picked by its identity, on the real
PostgreSQL.  Real sites share the table with other extensions (ckanext-doi
documents a row of its own), and the order of the rows on disk changes
whenever a legacy ``paster db upgrade`` rewrites CKAN's row."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from ckanext.datagovuk import legacy
from ckanext.datagovuk.errors import OperatorError

CKAN_ROW = ("Ckan", "/usr/lib/ckan/default/src/ckan/ckan/migration", 71)
DOI_ROW = ("DOI", "/usr/lib/ckan/default/src/ckanext-doi/ckanext/doi/migration", 2)


def engine_for(url):
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def with_rows(url, *rows):
    """A ``migrate_version`` as sqlalchemy-migrate creates it, the rows
    stored in the order given (a fresh heap is read in insertion order)."""
    with engine_for(url).begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE migrate_version (repository_id varchar(250) "
            "PRIMARY KEY, repository_path text, version integer)")
        for row in rows:
            connection.exec_driver_sql(
                "INSERT INTO migrate_version VALUES (%s, %s, %s)", row)
    return url


def version(url):
    with engine_for(url).connect() as connection:
        return legacy.ckan_legacy_version(connection)


def test_ckans_row_is_read_when_another_extensions_row_comes_first(
        make_database):
    url = with_rows(make_database(), DOI_ROW, CKAN_ROW)
    first = engine_for(url).connect().exec_driver_sql(
        "SELECT version FROM migrate_version").scalar()
    assert first == 2    # what the old `SELECT version` read
    assert version(url) == 71


@pytest.mark.parametrize("row", [
    ("Ckan", None, 71),
    ("Ckan Migrations", "/srv/ckan/ckan/migration", 71),
    ("ckan repository", "/srv/ckan/ckan/migration/", 71),
])
def test_either_mark_identifies_ckans_row(make_database, row):
    assert version(with_rows(make_database(), DOI_ROW, row)) == 71


def test_no_table_is_none(make_database):
    assert version(make_database()) is None


@pytest.mark.parametrize("rows, says", [
    ((DOI_ROW,), "no row for CKAN itself"),
    ((), "it is empty"),
    ((DOI_ROW, CKAN_ROW, ("Ckan Migrations", "/x/ckan/migration", 70)),
     "2 rows that look like CKAN's"),
])
def test_no_or_several_ckan_rows_are_refused_in_one_line(make_database,
                                                         rows, says):
    url = with_rows(make_database(), *rows)
    with pytest.raises(OperatorError) as raised:
        version(url)
    message = str(raised.value)
    assert says in message and "\n" not in message


def test_other_rows_move_to_the_archive_schema(make_database):
    url = with_rows(make_database(), DOI_ROW, CKAN_ROW,
                    ("qa", "/srv/ckanext-qa/ckanext/qa/migration", 4))
    with engine_for(url).begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA archived")
        assert legacy.move_other_rows(connection, "archived") == 2
        assert legacy.move_other_rows(connection, "archived") == 0
        kept = connection.exec_driver_sql(
            "SELECT * FROM migrate_version").all()
        moved = connection.exec_driver_sql(
            "SELECT * FROM archived.migrate_version ORDER BY 1").all()
    assert kept == [CKAN_ROW]
    assert moved == [DOI_ROW, ("qa", "/srv/ckanext-qa/ckanext/qa/migration", 4)]
