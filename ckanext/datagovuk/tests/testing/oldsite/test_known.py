"""Every case the 001 data migration treats (``KNOWN_CASES``) is in the
generated site, with the rows that hang off it."""
from __future__ import annotations

import json
import re

import pytest

from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.testing.oldsite import KNOWN_CASES as KNOWN
from ckanext.datagovuk.tests.conftest import OLD_SITE_DATASETS
from ckanext.datagovuk.tests.conftest import run_sql as query
from ckanext.datagovuk.tests.testing.oldsite.conftest import (
    scalar)


def test_every_theme_title_and_an_unmapped_one(site):
    titles = {row[0] for row in query(site, """
        SELECT DISTINCT value FROM package_extra
        WHERE key = 'theme-primary' AND state = 'active'""")}
    assert set(oldsite.THEME_SLUGS) <= titles
    assert len(oldsite.THEME_SLUGS) == 12
    assert KNOWN.unmapped_theme in titles
    assert KNOWN.unmapped_theme not in oldsite.THEME_SLUGS


def test_schema_key(site):
    rows = query(site, """
        SELECT p.name, e.value FROM package_extra e
        JOIN package p ON p.id = e.package_id WHERE e.key = 'schema'""")
    names = {name for name, _ in rows}
    assert {KNOWN.schema_dataset, KNOWN.organogram_central_dataset,
            KNOWN.organogram_local_dataset} <= names
    assert all(isinstance(json.loads(value), list) for _, value in rows)


@pytest.mark.parametrize("dataset,schema", [
    (KNOWN.organogram_central_dataset, oldsite.ORGANOGRAM_SCHEMA_CENTRAL),
    (KNOWN.organogram_local_dataset, oldsite.ORGANOGRAM_SCHEMA_LOCAL)])
def test_organogram_datasets(site, dataset, schema):
    extras = dict(query(site, """
        SELECT e.key, e.value FROM package_extra e
        JOIN package p ON p.id = e.package_id WHERE p.name = %s""",
                        (dataset,)))
    assert extras["import_source"] == "organograms_v2"
    assert extras["schema"] == f'["{schema}"]'
    resources = query(site, """
        SELECT r.url, r.format, r.description, r.state FROM resource r
        JOIN resource_group g ON g.id = r.resource_group_id
        JOIN package p ON p.id = g.package_id WHERE p.name = %s""",
                      (dataset,))
    active_csv = [url for url, fmt, _, state in resources
                  if fmt == "CSV" and state == "active"]
    assert len(active_csv) == 2
    assert all(url.startswith(
        "https://data.gov.uk/sites/default/files/organogram/")
        for url in active_csv)
    assert any(fmt == "CSV" and state == "deleted"
               for _, fmt, _, state in resources)
    assert [description for _, _, description, state in resources
            if description == "Organogram viewer" and state == "active"]


def test_site_file_that_is_not_an_organogram(site):
    assert scalar(site, """
        SELECT p.name FROM resource r
        JOIN resource_group g ON g.id = r.resource_group_id
        JOIN package p ON p.id = g.package_id WHERE r.url = %s""",
                  (KNOWN.non_organogram_file_url,)) == KNOWN.schema_dataset


def test_resource_list_extras(site):
    keys = {row[0] for row in query(site, """
        SELECT e.key FROM package_extra e JOIN package p
        ON p.id = e.package_id WHERE p.name = %s""",
                                        (KNOWN.resource_lists_dataset,))}
    assert {"individual_resources", "additional_resources",
            "timeseries_resources"} <= keys


def test_null_extra_values(site):
    assert query(site, """
        SELECT e.key FROM package_extra e JOIN package p
        ON p.id = e.package_id WHERE p.name = %s AND e.value IS NULL""",
                 (KNOWN.null_extra_dataset,)) == [(KNOWN.null_extra_key,)]
    assert query(site, """
        SELECT e.key FROM group_extra e JOIN "group" g
        ON g.id = e.group_id WHERE g.name = %s AND e.value IS NULL""",
                 (KNOWN.null_extra_publisher,)) \
        == [(KNOWN.null_extra_publisher_key,)]


def test_user_d_fullnames(site):
    fullnames = dict(query(site, """
        SELECT name, fullname FROM "user" WHERE name LIKE 'user\\_d%%'"""))
    first, second = KNOWN.same_fullname_users
    assert fullnames[first] == fullnames[second] == KNOWN.same_fullname
    for name, fullname in KNOWN.invalid_fullnames.items():
        assert fullnames[name] == fullname
    ckan_name = re.compile(r"^[a-z0-9_\-]{2,100}$")
    invalid = [f for f in KNOWN.invalid_fullnames.values()
               if f is None or not ckan_name.match(f)]
    assert len(invalid) == len(KNOWN.invalid_fullnames)
    assert "" in invalid and None in invalid and "J" in invalid
    assert any(f and len(f) > 100 for f in invalid)
    assert sum(1 for name in fullnames if re.match(r"^user_d\d+$", name)) \
        > len(KNOWN.invalid_fullnames)


def memberships(url: str, user: str) -> set[tuple[str, str]]:
    return set(query(url, """
        SELECT m.capacity, m.state FROM member m JOIN "user" u
        ON u.id = m.table_id WHERE m.table_name = 'user' AND u.name = %s""",
                     (user,)))


def test_publishing_users(site):
    assert memberships(site, KNOWN.publishing_admin) == {("admin", "active")}
    assert memberships(site, KNOWN.publishing_editor) == {("editor", "active")}
    assert memberships(site, KNOWN.deleted_membership_only) \
        == {("editor", "deleted")}
    assert memberships(site, KNOWN.active_and_deleted_memberships) \
        == {("admin", "active"), ("admin", "deleted")}
    counts = dict(query(site, """
        SELECT capacity || '/' || state, count(*) FROM member
        WHERE table_name = 'user' GROUP BY 1"""))
    assert counts["admin/active"] > 1 and counts["editor/active"] > 1


def test_non_publishing_users_have_history(site):
    for name in KNOWN.non_publishing_with_history + (
            KNOWN.non_publishing_user_d,):
        assert memberships(site, name) == set()
    for name in KNOWN.non_publishing_with_history:
        user_id = scalar(site, 'SELECT id FROM "user" WHERE name = %s',
                         (name,))
        for statement in (
                "SELECT count(*) FROM rating WHERE user_id = %(u)s",
                "SELECT count(*) FROM dashboard WHERE user_id = %(u)s",
                "SELECT count(*) FROM user_following_dataset "
                "WHERE follower_id = %(u)s",
                "SELECT count(*) FROM user_following_group "
                "WHERE follower_id = %(u)s",
                "SELECT count(*) FROM user_object_role o JOIN package_role p "
                "ON p.user_object_role_id = o.id WHERE o.user_id = %(u)s",
                "SELECT count(*) FROM user_object_role o JOIN group_role g "
                "ON g.user_object_role_id = o.id WHERE o.user_id = %(u)s"):
            assert scalar(site, statement, {"u": user_id}) >= 1, statement
    historic = KNOWN.non_publishing_with_history[0]
    # followed by someone who stays, and in an old authorization group
    assert scalar(site, """
        SELECT count(*) FROM user_following_user f JOIN "user" u
        ON u.id = f.object_id WHERE u.name = %s""", (historic,)) >= 1
    assert scalar(site, """
        SELECT count(*) FROM authorization_group_user a JOIN "user" u
        ON u.id = a.user_id WHERE u.name = %s""", (historic,)) == 1
    assert scalar(site, "SELECT count(*) FROM user_following_user") > 1


def test_sysadmins_pseudo_users_and_site_user(site):
    sysadmins = {row[0] for row in query(
        site, 'SELECT name FROM "user" WHERE sysadmin')}
    assert sysadmins == set(KNOWN.sysadmins)
    for name in KNOWN.sysadmins_with_membership:
        assert ("admin", "active") in memberships(site, name)
    for name in KNOWN.sysadmins_without_membership:
        assert memberships(site, name) == set()
    assert KNOWN.site_user in KNOWN.sysadmins_without_membership
    pseudo = {row[0] for row in query(site, """
        SELECT u.name FROM "user" u JOIN user_object_role o
        ON o.user_id = u.id JOIN system_role s
        ON s.user_object_role_id = o.id""")}
    assert pseudo == set(KNOWN.pseudo_users)


def test_emails_that_differ_only_in_case(site):
    def users(names):
        return query(site, """
            SELECT u.name, u.email, u.state, EXISTS (
                SELECT 1 FROM member m WHERE m.table_name = 'user'
                AND m.table_id = u.id AND m.state = 'active'
                AND m.capacity IN ('admin', 'editor'))
            FROM "user" u WHERE u.name = ANY(%s) ORDER BY u.name""",
                     (list(names),))

    (_, deleted_email, _, deleted_publishes), (_, kept_email, _, kept_publishes) \
        = users(KNOWN.email_case_clash_deleted_vs_kept)
    assert deleted_email != kept_email
    assert deleted_email.lower() == kept_email.lower()
    assert not deleted_publishes and kept_publishes
    pair = users(KNOWN.email_case_clash_kept_pair)
    assert pair[0][1] != pair[1][1]
    assert pair[0][1].lower() == pair[1][1].lower()
    assert all(state == "active" and publishes
               for _, _, state, publishes in pair)
    # the generic users never clash: only the planned pairs do
    assert scalar(site, """
        SELECT count(*) FROM (SELECT lower(email) FROM "user"
        WHERE email IS NOT NULL GROUP BY 1 HAVING count(*) > 1) c""") == 2


def test_resource_group_whose_dataset_is_gone(site):
    assert query(site, "SELECT id FROM resource_group "
                       "WHERE package_id IS NULL") \
        == [(KNOWN.orphan_resource_group_id,)]
    assert scalar(site, "SELECT count(*) FROM resource WHERE "
                        "resource_group_id = %s",
                  (KNOWN.orphan_resource_group_id,)) == 2
    assert scalar(site, "SELECT count(*) FROM resource_revision WHERE "
                        "resource_group_id = %s",
                  (KNOWN.orphan_resource_group_id,)) == 2


def test_harvest_sources_of_every_old_type(site):
    types = {row[0] for row in query(site,
                                     "SELECT DISTINCT type FROM harvest_source")}
    assert types == set(oldsite.OLD_HARVEST_TYPES)
    assert scalar(site, "SELECT count(*) FROM harvest_source WHERE type = "
                        "'dkan' AND url = %s", (KNOWN.dkan_source_url,)) == 1
    for kind, dataset in KNOWN.harvested_datasets.items():
        assert scalar(site, """
            SELECT s.type FROM harvest_object o
            JOIN harvest_source s ON s.id = o.harvest_source_id
            JOIN package p ON p.id = o.package_id
            WHERE p.name = %s AND o.current""", (dataset,)) == kind
    assert scalar(site, "SELECT count(*) FROM harvest_coupled_resource") >= 1


def test_duplicated_harvest_source_has_everything(site):
    source = KNOWN.duplicate_harvest_source_id
    assert scalar(site, "SELECT count(*) FROM harvest_source WHERE id = %s",
                  (source,)) == 1
    # it duplicates another source's URL
    assert scalar(site, """
        SELECT count(*) FROM harvest_source WHERE url =
        (SELECT url FROM harvest_source WHERE id = %s)""", (source,)) == 2
    for statement in (
            "SELECT count(*) FROM harvest_job WHERE source_id = %(s)s",
            "SELECT count(*) FROM harvest_gather_error e JOIN harvest_job j "
            "ON j.id = e.harvest_job_id WHERE j.source_id = %(s)s",
            "SELECT count(*) FROM harvest_object WHERE "
            "harvest_source_id = %(s)s",
            "SELECT count(*) FROM harvest_object_extra x JOIN harvest_object o "
            "ON o.id = x.harvest_object_id WHERE o.harvest_source_id = %(s)s",
            "SELECT count(*) FROM harvest_object_error x JOIN harvest_object o "
            "ON o.id = x.harvest_object_id WHERE o.harvest_source_id = %(s)s"):
        assert scalar(site, statement, {"s": source}) >= 1, statement


def test_deleted_datasets_and_resources(site):
    assert scalar(site, "SELECT state FROM package WHERE name = %s",
                  (KNOWN.deleted_dataset,)) == "deleted"
    assert scalar(site, """
        SELECT count(*) FROM resource r JOIN resource_group g
        ON g.id = r.resource_group_id JOIN package p ON p.id = g.package_id
        WHERE p.name = %s AND r.state = 'deleted'""",
                  (KNOWN.deleted_resource_dataset,)) == 1
    # the deleted dataset's history: active first, deleted now
    assert query(site, """
        SELECT r.state, r.current FROM package_revision r
        JOIN package p ON p.id = r.continuity_id WHERE p.name = %s
        ORDER BY r.revision_timestamp""", (KNOWN.deleted_dataset,))[-1] \
        == ("deleted", True)


def test_publishers_and_their_hierarchy(site):
    kinds = query(site, """SELECT DISTINCT type, is_organization
                           FROM "group" """)
    assert kinds == [("organization", True)]
    keys = {row[0] for row in query(site, "SELECT DISTINCT key FROM group_extra")}
    assert {"contact-name", "contact-email", "contact-phone", "foi-name",
            "foi-email", "foi-phone", "foi-web", "category",
            "abbreviation", "closed"} <= keys
    parents = scalar(site, """
        SELECT count(*) FROM member m JOIN "group" child ON child.id = m.group_id
        JOIN "group" parent ON parent.id = m.table_id
        WHERE m.table_name = 'group' AND m.capacity = 'parent'""")
    assert parents >= 1
    assert scalar(site, """
        SELECT count(*) FROM member m JOIN package p ON p.id = m.table_id
        WHERE m.table_name = 'package' AND m.capacity = 'organization'
        AND m.group_id = p.owner_org""") == OLD_SITE_DATASETS


VERSIONED = ("package", "package_extra", "package_tag", "resource",
             "resource_group", "member", "group", "group_extra",
             "package_relationship")


@pytest.mark.parametrize("table", VERSIONED)
def test_every_row_has_its_current_revision(site, table):
    assert scalar(site, f'SELECT count(*) FROM "{table}"') > 0
    missing = scalar(site, f"""
        SELECT count(*) FROM "{table}" b WHERE NOT EXISTS (
            SELECT 1 FROM {table}_revision r WHERE r.continuity_id = b.id
            AND r.id = b.id AND r.revision_id = b.revision_id AND r.current
            AND r.state IS NOT DISTINCT FROM b.state)""")
    assert missing == 0
    assert scalar(site, f"""
        SELECT count(*) FROM {table}_revision WHERE current
        GROUP BY continuity_id HAVING count(*) > 1""") is None


def test_foreign_keys_all_hold_and_the_orphan_is_the_only_gap(site):
    constraints = query(site, """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE contype = 'f'
        AND connamespace = 'public'::regnamespace""")
    assert len(constraints) > 80
    for table, name, definition in constraints:
        match = re.match(r"FOREIGN KEY \((\w+)\) REFERENCES ([\w.\"]+)\((\w+)\)",
                         definition)
        column, parent, parent_column = match.groups()
        broken = scalar(site, f"""
            SELECT count(*) FROM {table} c WHERE c.{column} IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM {parent} p
                            WHERE p.{parent_column} = c.{column})""")
        assert broken == 0, name
    # the FK to package forbids a dangling id: the orphan's is NULL
    assert scalar(site, "SELECT count(*) FROM resource_group_revision "
                        "WHERE package_id IS NULL") >= 1


def test_old_authorization_and_dgu_tables_have_rows(site):
    for table in ("user_object_role", "package_role", "group_role",
                  "system_role", "authorization_group",
                  "authorization_group_role", "rating", "dashboard",
                  "activity", "activity_detail", "revision", "data_cache",
                  "publisher_request", "schema", "codelist", "commitment",
                  "related", "task_status", "system_info"):
        assert scalar(site, f'SELECT count(*) FROM "{table}"') >= 1, table
    assert scalar(site, "SELECT id FROM schema WHERE id = %s",
                  (oldsite.ORGANOGRAM_SCHEMA_CENTRAL,))
