"""The decisions ``migrate --from`` takes before it transfers anything:
``source_facts.sql`` run by the real psql on generated old sites (read
only), judged by migrate's own checks.  Through ssh and the whole command:
test_pipeline.py."""
from __future__ import annotations

import subprocess

import pytest

from ckanext.datagovuk import db, decisions, migrate
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import dump_database, run_sql

KEPT_PAIR = oldsite.KNOWN_CASES.email_case_clash_kept_pair
DELETED, KEPT = oldsite.KNOWN_CASES.email_case_clash_deleted_vs_kept


def ask(url, site_user: str = "") -> str:
    url = db.parse(url)
    result = subprocess.run(
        ["psql", "-X", "-w", "-q", "-A", "-t", "-z", "-0", "-v",
         "ON_ERROR_STOP=1", "-v", f"site_user={site_user}", "-d",
         url.database, "-f", decisions.SQL_PATH],
        env=db.libpq_env(url), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def decide(url, **options) -> list[decisions.Decision]:
    return decisions.decide(ask(url), migrate.MigrationOptions(**options))


def test_the_query_changes_nothing_and_reads_the_old_site(old_site):
    before = dump_database(old_site)
    facts = decisions.parse(ask(old_site))
    assert dump_database(old_site) == before
    assert {"package", "user", "resource_group"} <= set(facts.tables)
    assert [row[2] for row in facts.migrate_version] == [71]
    assert facts.alembic_revision is None and facts.applied == []


def test_an_email_clash_counts_only_users_001_keeps(old_site):
    (clash,) = decide(old_site)
    assert clash.found.startswith("1 email address(es) shared")
    assert not clash.settled
    assert clash.option == "--resolve-email-clash keep-oldest"
    assert all(name in clash.refusal for name in KEPT_PAIR)
    # The pair whose older account 001 deletes needs no decision.
    assert DELETED not in clash.refusal and KEPT not in clash.refusal
    (settled,) = decide(old_site, resolve_email_clash="keep-oldest")
    assert settled.settled and settled.line().startswith("decided: ")
    # Without the data migrations nobody is deleted: both pairs count.
    (both,) = decide(old_site, data_migrations=False)
    assert both.found.startswith("2 email address(es)")


def test_the_prediction_is_what_migrate_finds_after_001(old_site):
    run_sql(old_site, "UPDATE \"user\" SET email = 'x' || email "
                      "WHERE name = %s", (KEPT_PAIR[0],))
    assert decide(old_site) == []
    report = migrate.migrate(old_site, [], {}, migrate.MigrationOptions(
        dry_run=True))
    assert report.outcome.startswith("dry run")


def test_a_legacy_version_001_cannot_apply_to(make_database,
                                              legacy_site_templates):
    site = make_database(template=legacy_site_templates[82])
    blocked, clash = decide(site)
    # 001 cannot run, so deletes nobody: both pairs of the site clash.
    assert clash.found.startswith("2 email address(es)")
    assert blocked.option == "--no-data-migrations" and not blocked.settled
    assert "legacy sqlalchemy-migrate version 82" in blocked.found
    assert "`migrate --no-data-migrations`" in blocked.refusal
    assert all(found.settled for found in decide(
        site, data_migrations=False, resolve_email_clash="keep-oldest"))


@pytest.mark.parametrize("change, message", [
    ("UPDATE migrate_version SET repository_id = 'doi', "
     "repository_path = '/src/ckanext-doi/migration'",
     "migrate_version has no row for CKAN itself"),
    ("INSERT INTO migrate_version VALUES ('ckan-again', "
     "'/x/ckan/migration', 70)", "2 rows that look like CKAN's"),
    ("UPDATE migrate_version SET version = 200",
     "legacy sqlalchemy-migrate version 200, which no CKAN had"),
], ids=["no CKAN row", "two CKAN rows", "out of range"])
def test_an_unreadable_migrate_version_is_refused(old_site, change, message):
    run_sql(old_site, change)
    (refused,) = decide(old_site, resolve_email_clash="keep-oldest")
    assert message in refused.refusal and not refused.option
    assert refused.line().startswith("refused: ")
