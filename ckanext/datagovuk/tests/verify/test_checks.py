"""Each check of ``datagovuk verify`` made to fail: a copy of the migrated
old site is tampered with in one way, and exactly the check that guards
it reports the difference (real PostgreSQL; the checks run in this
process, without the API sample, which test_run.py covers through the
command)."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import run_sql
from ckanext.datagovuk.verify import checks, run

KNOWN = oldsite.KNOWN_CASES

# check name -> (what the tamper does, SQL on the migrated copy)
TAMPERS = {
    "datasets": [
        ("a changed title", "UPDATE package SET title = 'tampered' WHERE "
         "id = (SELECT id FROM package WHERE state = 'active' "
         "ORDER BY name LIMIT 1)"),
        ("a deleted dataset", "UPDATE package SET state = 'deleted' WHERE "
         "id = (SELECT id FROM package WHERE state = 'active' "
         "ORDER BY name LIMIT 1)"),
        ("a licence lost", "UPDATE package SET license_id = NULL WHERE "
         "id = (SELECT id FROM package WHERE license_id IS NOT NULL "
         "ORDER BY name LIMIT 1)"),
    ],
    "dataset extras": [
        ("a changed extra", "UPDATE package SET extras = extras || "
         "'{\"theme-primary\": \"Society\"}' WHERE id = (SELECT id FROM "
         "package WHERE extras ? 'theme-primary' ORDER BY name LIMIT 1)"),
        ("a resource list left", "UPDATE package SET extras = extras || "
         "'{\"individual_resources\": \"[]\"}' WHERE id = (SELECT id FROM "
         "package WHERE extras IS NOT NULL ORDER BY name LIMIT 1)"),
        # Keys no rule maps: compared whole (MAPPED_EXTRAS).
        ("an unmapped extra changed", "UPDATE package SET extras = extras || "
         "'{\"update_frequency\": \"tampered\"}' WHERE id = (SELECT id FROM "
         "package WHERE extras IS NOT NULL ORDER BY name LIMIT 1)"),
        ("an extra lost", "UPDATE package SET extras = extras - "
         "'theme-secondary' WHERE id = (SELECT id FROM package WHERE "
         "extras ? 'theme-secondary' ORDER BY name LIMIT 1)"),
    ],
    "resources": [
        ("a dropped resource", "UPDATE resource SET state = 'deleted' "
         "WHERE id = (SELECT id FROM resource WHERE state = 'active' "
         "ORDER BY id LIMIT 1)"),
        ("a resource moved to another dataset", "UPDATE resource SET "
         "package_id = (SELECT id FROM package WHERE state = 'active' "
         "ORDER BY name DESC LIMIT 1) WHERE id = (SELECT r.id FROM resource r"
         " JOIN package p ON p.id = r.package_id WHERE r.state = 'active' "
         "ORDER BY p.name LIMIT 1)"),
        ("an organogram URL not rewritten", "UPDATE resource SET url = "
         "replace(url, 'https://s3-eu-west-1.amazonaws.com/"
         "datagovuk-test-ckan-organogram/', "
         f"'{oldsite.OLD_FILES_BASE_URL}') WHERE url LIKE "
         "'https://s3-eu-west-1.amazonaws.com/%'"),
        ("a viewer link left", "UPDATE resource SET state = 'active' "
         "WHERE description = 'Organogram viewer'"),
        # One the rules leave alone: compared on the server.
        ("a plain resource renamed", "UPDATE resource SET name = 'tampered'"
         " WHERE id = (SELECT id FROM resource WHERE state = 'active' AND "
         f"url NOT LIKE '{oldsite.OLD_FILES_BASE_URL}%' AND description IS "
         "DISTINCT FROM 'Organogram viewer' ORDER BY id LIMIT 1)"),
    ],
    "publishers": [
        ("a lost publisher", "UPDATE \"group\" SET state = 'deleted' WHERE "
         "id = (SELECT id FROM \"group\" WHERE is_organization "
         "ORDER BY name LIMIT 1)"),
        ("a lost parent", "DELETE FROM member WHERE table_name = 'group' "
         "AND capacity = 'parent'"),
    ],
    "users": [
        # by id: 001 renamed the user_d users
        ("a deleted publishing user", "UPDATE \"user\" SET state = 'deleted'"
         " WHERE id = (SELECT id FROM datagovuk.manifest_user WHERE name = "
         f"'{KNOWN.publishing_editor}')"),
        ("a sysadmin left promoted", "UPDATE \"user\" SET sysadmin = true "
         "WHERE name = 'harvest'"),
        ("a non-publishing user back", "INSERT INTO \"user\" (id, name, "
         "state, sysadmin) VALUES ('tampered-user', 'tampered', 'active', "
         "false)"),
    ],
    "archive": [
        ("a missing archive row", "DELETE FROM datagovuk_legacy.revision "
         "WHERE id = (SELECT id FROM datagovuk_legacy.revision "
         "ORDER BY id LIMIT 1)"),
    ],
    "tags": [
        ("a tag left", "INSERT INTO tag (id, name) VALUES "
         "('tampered-tag', 'tampered')"),
    ],
    "schema": [
        ("a table CKAN's model lacks", "CREATE TABLE public.tampered "
         "(id integer)"),
    ],
}


def verify_databases(url: str) -> run.VerifyReport:
    return run.verify(url, run.SampleOptions(api=False))


def failed(report: run.VerifyReport) -> dict[str, int]:
    return {step.name: step.differences for step in report.steps
            if not step.ok}


def test_every_check_of_the_registry_has_a_tamper_that_fails_it():
    assert set(TAMPERS) == {check.name for check in checks.REGISTRY}


def test_the_migrated_site_verifies(make_database,
                                    migrated_old_site_template):
    report = verify_databases(make_database(
        template=migrated_old_site_template))
    assert report.ok, report.to_text()
    compared = {step.name: step.compared for step in report.steps}
    assert all(compared.values()), compared


@pytest.mark.parametrize("check,what,tamper", [
    (check, what, sql) for check, tampers in TAMPERS.items()
    for what, sql in tampers], ids=lambda value: value[:40])
def test_a_tamper_fails_exactly_its_check(check, what, tamper, make_database,
                                          migrated_old_site_template):
    url = make_database(template=migrated_old_site_template)
    run_sql(url, tamper)
    report = verify_databases(url)
    assert not report.ok
    assert set(failed(report)) == {check}, report.to_text()
    first = next(step for step in report.steps if step.name == check).first
    assert first and all(str(difference) for difference in first)
    assert check in report.to_text() and "FAILED" in report.to_text()
