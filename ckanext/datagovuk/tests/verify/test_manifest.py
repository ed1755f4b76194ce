"""The manifest ``migrate`` records before anything changes (real
PostgreSQL, the generated old site)."""
from __future__ import annotations

from ckanext.datagovuk import migrate, runner
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import run_sql

KNOWN = oldsite.KNOWN_CASES


def migrate_in_process(url: str, **options) -> migrate.MigrationReport:
    return migrate.migrate(url, [], runner.settings_from_config(),
                           migrate.MigrationOptions(
                               resolve_email_clash="keep-oldest", **options))


def test_the_manifest_holds_the_site_as_it_was(old_site):
    tags = run_sql(old_site, "SELECT count(*) FROM tag")[0][0]
    users = run_sql(old_site, 'SELECT count(*) FROM "user"')[0][0]
    report = migrate_in_process(old_site)
    assert report.manifest and "manifest" in dict(report.timings)
    # before the data migration: the users it deleted, the extras it
    # renamed, the tags it emptied
    assert run_sql(old_site, "SELECT count(*) FROM datagovuk.manifest_user"
                   )[0][0] == users
    assert run_sql(old_site, "SELECT NOT publisher AND NOT sysadmin FROM "
                   "datagovuk.manifest_user WHERE name = %s",
                   (KNOWN.non_publishing_user_d,)) == [(True,)]
    assert run_sql(old_site, "SELECT extras ? 'schema' FROM "
                   "datagovuk.manifest_dataset WHERE name = %s",
                   (KNOWN.schema_dataset,)) == [(True,)]
    assert run_sql(old_site, "SELECT rows FROM datagovuk.manifest_archive "
                   "WHERE table_name = 'tag'") == [(tags,)]
    # the trap: a NULL extra, kept as JSON null and flagged
    assert run_sql(old_site, "SELECT trap, extras -> %s = 'null'::jsonb "
                   "FROM datagovuk.manifest_dataset WHERE name = %s",
                   (KNOWN.null_extra_key, KNOWN.null_extra_dataset)
                   ) == [(True, True)]
    assert run_sql(old_site, "SELECT pending, archive, organogram_base_url "
                   "FROM datagovuk.manifest") == [
        (["001_bytemark_to_govuk.sql"], True,
         "https://s3-eu-west-1.amazonaws.com/datagovuk-test-ckan-organogram/")]


def test_a_second_run_keeps_the_first_manifest(old_site):
    migrate_in_process(old_site, skip_upgrade=True)
    taken = run_sql(old_site, "SELECT taken_at FROM datagovuk.manifest")
    report = migrate_in_process(old_site)
    assert not report.manifest
    assert run_sql(old_site, "SELECT taken_at FROM datagovuk.manifest"
                   ) == taken
    # still the users as they were before the first run's data migration
    assert run_sql(old_site, "SELECT count(*) FROM datagovuk.manifest_user "
                   "WHERE name = %s", (KNOWN.non_publishing_user_d,)
                   ) == [(1,)]


def test_a_dry_run_leaves_no_manifest(old_site):
    migrate_in_process(old_site, dry_run=True)
    assert run_sql(old_site, "SELECT to_regclass('datagovuk.manifest')"
                   ) == [(None,)]
