"""The old schema as CKAN's migrations build it, with the DGU and harvest
tables, at CKAN 2.2 and at the later legacy versions."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import alembic_runner, db
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import OLD_SITE_DATASETS, ROOT, run_command
from ckanext.datagovuk.tests.conftest import run_sql as query
from ckanext.datagovuk.tests.testing.oldsite.conftest import (
    columns, scalar, schema_dump, table_names)


def test_migrate_version_is_71_and_no_alembic_version(site):
    assert query(site, "SELECT repository_id, version FROM migrate_version") \
        == [("Ckan", 71)]
    assert "alembic_version" not in table_names(site)
    column_types = query(site, """
        SELECT column_name, data_type, character_maximum_length
        FROM information_schema.columns WHERE table_name = 'migrate_version'
        ORDER BY ordinal_position""")
    assert column_types == [("repository_id", "character varying", 250),
                            ("repository_path", "text", None),
                            ("version", "integer", None)]


def test_schema_equals_ckan_upgrade_to_071_apart_from_dgu_additions(
        old_site, make_database):
    reference = make_database()
    result = run_command(["ckan", "-c", "test.ini", "db", "upgrade", "-v",
                          "c16f081ef73a"], db_url=reference, cwd=ROOT)
    assert result.returncode == 0, result.stderr

    added = set(oldsite.DGU_TABLES) | set(oldsite.HARVEST_TABLES) \
        | {"migrate_version"}
    assert table_names(old_site) - table_names(reference) == added
    assert table_names(reference) - table_names(old_site) \
        == {"alembic_version"}
    indexes = set(query(old_site, """
        SELECT indexname, tablename FROM pg_indexes
        WHERE indexname LIKE 'idx_%_continuity_id'"""))
    assert indexes == set(oldsite.CONTINUITY_INDEXES.items())

    # Take the additions away again: what is left must be CKAN's own.
    statements = [f'DROP TABLE "{table}" CASCADE' for table in added]
    statements += [f"DROP INDEX {index}"
                   for index in oldsite.CONTINUITY_INDEXES]
    connection = db.connect(old_site)
    with connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()
    connection = db.connect(reference)
    with connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE alembic_version")
    connection.close()
    assert schema_dump(old_site) == schema_dump(reference)


def test_harvest_tables_are_optional(old_site_template_no_harvest,
                                     make_database):
    url = make_database(template=old_site_template_no_harvest)
    tables = table_names(url)
    assert not tables & set(oldsite.HARVEST_TABLES)
    assert set(oldsite.DGU_TABLES) <= tables
    assert scalar(url, "SELECT count(*) FROM package") == OLD_SITE_DATASETS
    assert scalar(url, "SELECT count(*) FROM package_extra WHERE key = "
                       "'harvest_object_id'") == 0


def test_continuity_indexes_make_ckan_migration_079_fail(old_site):
    """The reason they are there: CKAN's own 079 cannot run over them."""
    engine = create_engine(old_site, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            with pytest.raises(ProgrammingError,
                               match="idx_resource_continuity_id.*already exists"):
                with connection.begin():
                    alembic_runner.upgrade(
                        connection, "e0177a15d2c9",
                        legacy=alembic_runner.CKAN_22_LEGACY_VERSION)
    finally:
        engine.dispose()
    assert scalar(old_site, "SELECT version FROM migrate_version") == 71



def test_build_schema_twice_fails_and_changes_nothing(make_database,
                                                      empty_schema_template):
    url = make_database(template=empty_schema_template)
    before = schema_dump(url)
    with pytest.raises(OperatorError, match="cannot build the old schema"):
        oldsite.build_schema(url)
    assert schema_dump(url) == before



@pytest.mark.parametrize("version", oldsite.LEGACY_VERSIONS)
def test_a_site_at_each_legacy_version_holds_data(version, make_database,
                                                  legacy_site_templates):
    url = make_database(template=legacy_site_templates[version])

    assert query(url, "SELECT version FROM migrate_version") == [(version,)]
    assert "alembic_version" not in table_names(url)
    for table in ("package", "package_extra", "resource", "user", "member",
                  "revision", "activity"):
        assert scalar(url, f'SELECT count(*) FROM "{table}"') > 0, table
    resource = columns(url, "resource")
    if version < 74:
        assert "resource_group_id" in resource
        assert scalar(url, "SELECT count(*) FROM resource_group") > 0
    else:
        # Legacy 074 linked each resource to its dataset directly.
        assert "resource_group" not in table_names(url)
        assert "resource_group_id" not in resource
        assert scalar(url, "SELECT count(*) FROM resource r WHERE NOT EXISTS "
                      "(SELECT 1 FROM package p WHERE p.id = r.package_id)"
                      ) == 0
    assert ("resource_view" in table_names(url)) == (version >= 72)
    if version >= 72:
        assert scalar(url, "SELECT count(*) FROM resource_view") > 0
    assert ("user_object_role" in table_names(url)) == (version < 78)
    assert ("openid" in columns(url, "user")) == (version < 86)
    if version >= 84:
        assert scalar(url, "SELECT count(*) FROM package "
                      "WHERE metadata_created IS NULL") == 0
    # The continuity indexes production carried ahead of 079/080, or
    # CKAN's own from those versions on: present either way.
    indexes = {row[0] for row in query(
        url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert set(oldsite.CONTINUITY_INDEXES) <= indexes


@pytest.mark.parametrize("version", [70, 90])
def test_a_version_the_generator_cannot_build_is_refused(version,
                                                         make_database):
    url = make_database()

    with pytest.raises(OperatorError, match="--legacy-version must be from "
                       "71 .* to 89"):
        oldsite.build_schema(url, version=version)

    assert table_names(url) == set()
