"""``datagovuk migrate`` on legacy CKAN databases of every version the
generator builds (71, CKAN 2.2, to 86), through the real commands on the
real PostgreSQL with CKAN's real migrations: with ``--no-data-migrations``
each reaches head, and 71-73 also with data.gov.uk's data migration 001;
each time ``ckan db check`` passes and the schema equals a fresh
``ckan db init``.  From 74 on (no ``resource_group``) 001 cannot apply and
``migrate`` without the option refuses, changing nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import db, migrate, runner, status
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, ckan_datagovuk, dump_database, one_line_error, run_command)
from ckanext.datagovuk.tests.conftest import run_sql as query

VERSIONS = oldsite.LEGACY_VERSIONS
# 001 needs CKAN 2.2's tables; legacy 074 drops resource_group.
VERSIONS_001_APPLIES_TO = tuple(v for v in VERSIONS if v < 74)
CASES = ([(version, False) for version in VERSIONS]
         + [(version, True) for version in VERSIONS_001_APPLIES_TO])
MIGRATE = ["migrate", "--resolve-email-clash", "keep-oldest"]
NO_DATA_MIGRATIONS = "--no-data-migrations"


@pytest.fixture(scope="module")
def fresh_schema(ckan_head_template, ckan_db_url):
    url = db.with_database(ckan_db_url, ckan_head_template)
    return dump_database(url.render_as_string(hide_password=False),
                         "-s", "-n", "public")


def collect_status(url: str) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return status.collect(engine, plugins=[], site_user="test.ckan.net")
    finally:
        engine.dispose()


@pytest.mark.parametrize("version,with_001", CASES,
                         ids=[f"{v}-{'001' if w else 'no-data-migrations'}"
                              for v, w in CASES])
def test_a_legacy_site_reaches_head(version, with_001, legacy_site_templates,
                                    make_database, fresh_schema):
    url = make_database(template=legacy_site_templates[version])
    datasets = query(url, "SELECT count(*) FROM package")[0][0]

    report = migrate.migrate(url, [], runner.settings_from_config(),
                             migrate.MigrationOptions(
                                 resolve_email_clash="keep-oldest",
                                 data_migrations=with_001))

    assert report.schema_before == f"legacy {version}"
    assert report.schema_after.endswith("(head)")
    check = run_command(["ckan", "-c", TEST_INI, "db", "check"], db_url=url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Database schema is up to date" in check.stdout
    assert dump_database(url, "-s", "-n", "public") == fresh_schema
    # Every dataset is still there, each resource with its dataset.
    assert query(url, "SELECT count(*) FROM package")[0][0] == datasets
    assert query(url, "SELECT count(*) FROM resource r WHERE NOT EXISTS "
                 "(SELECT 1 FROM package p WHERE p.id = r.package_id)"
                 ) == [(0,)]
    ledger = dict(query(url, "SELECT filename, skipped FROM "
                        "datagovuk.applied_migrations"))
    assert ledger == {m.name: not with_001 for m in runner.discover()}


@pytest.mark.parametrize("version", VERSIONS)
def test_skipped_data_migrations_are_not_pending_again(version,
                                                       legacy_site_templates,
                                                       make_database):
    url = make_database(template=legacy_site_templates[version])
    tags = query(url, "SELECT count(*) FROM tag")[0][0]
    migrate.migrate(url, [], runner.settings_from_config(),
                    migrate.MigrationOptions(resolve_email_clash="keep-oldest",
                                             data_migrations=False))

    state = collect_status(url)

    data = state["data_migrations"]
    assert data["pending"] == []
    assert [(e["file"], e["skipped"]) for e in data["applied"]] == [
        (m.name, True) for m in runner.discover()]
    assert state["next"] == "reindex"
    # Nothing of 001 ran: tags (which 001 removes) are all still there.
    assert tags > 0
    assert query(url, "SELECT count(*) FROM tag")[0][0] == tags


@pytest.mark.parametrize("version", [v for v in VERSIONS
                                     if v not in VERSIONS_001_APPLIES_TO])
def test_without_the_option_a_site_001_cannot_apply_to_is_refused(
        version, legacy_site_templates, make_database):
    url = make_database(template=legacy_site_templates[version])
    before = dump_database(url)

    with pytest.raises(OperatorError) as refused:
        migrate.migrate(url, [], runner.settings_from_config(),
                        migrate.MigrationOptions())

    assert NO_DATA_MIGRATIONS in str(refused.value)
    assert "resource_group" in str(refused.value)
    assert dump_database(url) == before


def test_the_refusal_is_one_line_naming_the_option(legacy_site_templates,
                                                  make_database):
    url = make_database(template=legacy_site_templates[82])
    before = dump_database(url)

    result = ckan_datagovuk(MIGRATE, db_url=url)

    line = one_line_error(result)
    assert "legacy sqlalchemy-migrate version 82" in line
    assert f"migrate {NO_DATA_MIGRATIONS}" in line
    assert dump_database(url) == before


def test_no_data_migrations_with_skip_upgrade_is_a_usage_error(
        legacy_site_templates, make_database):
    url = make_database(template=legacy_site_templates[71])

    result = ckan_datagovuk(["migrate", NO_DATA_MIGRATIONS, "--skip-upgrade"],
                            db_url=url)

    assert result.returncode == 2
    assert NO_DATA_MIGRATIONS in one_line_error(result)


def test_migrate_from_a_dump_of_a_legacy_site(legacy_site_templates,
                                              make_database, ckan_db_url,
                                              tmp_path):
    """The whole move with --no-data-migrations, from a dump of a CKAN 2.5
    (legacy 82) site into this site's (empty) database."""
    dump = str(tmp_path / "legacy82.dump")
    oldsite.write_dump(db.with_database(ckan_db_url,
                                        legacy_site_templates[82]), dump)
    url = make_database()
    args = ["migrate", "--from", dump, NO_DATA_MIGRATIONS,
            "--resolve-email-clash", "keep-oldest"]

    plan = ckan_datagovuk(args + ["--plan"], db_url=url)
    result = ckan_datagovuk(args, db_url=url)

    assert plan.returncode == 0, plan.stderr
    assert "no data migrations (001_bytemark_to_govuk.sql recorded as " \
        "skipped)" in plan.stdout
    assert result.returncode == 0, result.stderr
    assert "schema version: legacy 82 -> alembic " in result.stdout
    assert query(url, "SELECT filename, skipped FROM "
                 "datagovuk.applied_migrations") == [
        (m.name, True) for m in runner.discover()]


@pytest.mark.parametrize("version", [0, 95])
def test_a_legacy_version_no_ckan_had_is_refused(version,
                                                 legacy_site_templates,
                                                 make_database):
    url = make_database(template=legacy_site_templates[71])
    query(url, "UPDATE migrate_version SET version = %s", (version,))
    before = dump_database(url)

    with pytest.raises(OperatorError, match=f"legacy sqlalchemy-migrate "
                       f"version {version}, which no CKAN had"):
        migrate.migrate(url, [], runner.settings_from_config(),
                        migrate.MigrationOptions(data_migrations=False))

    assert dump_database(url) == before
