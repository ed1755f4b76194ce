"""The 001 data migration on a real CKAN 2.2 schema.

The schema is built once per session by CKAN's own migrations (``ckan db
upgrade -v c16f081ef73a``, legacy 071, with ``alembic_version`` swapped for
``migrate_version`` = 71 like a real 2.2 dump); each test gets a copy with a
handful of hand-made rows, one or two per behaviour of FACTS.md section 2,
so every case is explicit.  The generated old site (engineer A's
``old_site`` fixture) is used too when it is available.
"""
from __future__ import annotations

import os
import re
import subprocess
import uuid

import pytest
from sqlalchemy import create_engine

from ckanext.datagovuk import db, runner
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, create_database, drop_database, run_command)
from ckanext.datagovuk.tests.conftest import run_sql as query
from ckanext.datagovuk.tests.conftest import admin_execute as execute

MIGRATION = os.path.join(runner.DEFAULT_MIGRATIONS_DIR, "001_bytemark_to_govuk.sql")
OLD_FILES = "https://data.gov.uk/sites/default/files/"
NEW_BASE = "https://s3.example.org/organogram-bucket"   # no trailing slash on purpose
SETTINGS = {
    runner.KEEP_SYSADMINS_GUC: "keepme, other-kept",
    runner.ORGANOGRAM_BASE_URL_GUC: NEW_BASE,
    runner.SITE_USER_GUC: "dgu-site",
}
DUPLICATE_SOURCE = "2c798023-abac-4785-ad19-67bd5c1aed63"
CENTRAL_SCHEMA = '["d3c0b23f-6979-45e4-88ed-d2ab59b005d0"]'
LOCAL_SCHEMA = '["538b857a-64ba-490e-8440-0e32094a28a7"]'
THEMES = {
    "Business & Economy": "business-and-economy", "Environment": "environment",
    "Mapping": "mapping", "Crime & Justice": "crime-and-justice",
    "Government": "government", "Society": "society", "Defence": "defence",
    "Government Spending": "government-spending",
    "Towns & Cities": "towns-and-cities", "Education": "education",
    "Health": "health", "Transport": "transport",
}
CONTINUITY_INDEXES = oldsite.CONTINUITY_INDEXES

# The old harvest tables as ckanext-harvest (DGU branch) created them.
HARVEST_DDL = """
CREATE TABLE harvest_source (
    id text PRIMARY KEY, name text, url text NOT NULL, title text,
    description text, config text, created timestamp, type text NOT NULL,
    active boolean, user_id text, publisher_id text, frequency text,
    next_run timestamp);
CREATE TABLE harvest_job (
    id text PRIMARY KEY, created timestamp, gather_started timestamp,
    gather_finished timestamp, finished timestamp,
    source_id text REFERENCES harvest_source (id), status text);
CREATE TABLE harvest_object (
    id text PRIMARY KEY, guid text, current boolean, gathered timestamp,
    content text, state text, retry_times integer,
    harvest_job_id text REFERENCES harvest_job (id),
    harvest_source_id text REFERENCES harvest_source (id),
    package_id text REFERENCES package (id) DEFERRABLE);
CREATE TABLE harvest_object_extra (
    id text PRIMARY KEY, harvest_object_id text REFERENCES harvest_object (id),
    key text, value text);
CREATE TABLE harvest_gather_error (
    id text PRIMARY KEY, harvest_job_id text REFERENCES harvest_job (id),
    message text, created timestamp);
CREATE TABLE harvest_object_error (
    id text PRIMARY KEY, harvest_object_id text REFERENCES harvest_object (id),
    message text, stage text, line integer, created timestamp);
CREATE TABLE harvest_coupled_resource (
    id text PRIMARY KEY,
    service_record_package_id text REFERENCES package (id),
    harvest_source_reference text,
    dataset_record_package_id text REFERENCES package (id));
"""

DGU_DDL = """
CREATE TABLE data_cache (id text PRIMARY KEY, object_id text, key text,
                         value text, created timestamp);
CREATE TABLE publisher_request (id text PRIMARY KEY, user_name text NOT NULL,
                                group_name text NOT NULL, reason text);
CREATE TABLE codelist (id text PRIMARY KEY, url text, title text);
"""

# (id, name, fullname, sysadmin, membership capacity in org-a or None)
USERS = [
    ("u-sys", "oldadmin", "Old Admin", True, None),
    ("u-keep", "keepme", "Kept Admin", True, None),
    ("u-site", "dgu-site", None, True, None),
    ("u-sysd", "user_d900", "Big Boss", True, None),
    ("u-editor", "editor1", "Editor One", False, "editor"),
    ("u-admin", "admin1", "Admin One", False, "admin"),
    ("u-lurker", "lurker", "Lurker", False, None),
    ("u-visitor", "visitor", None, False, None),
    ("u-logged", "logged_in", None, False, None),
    ("u-gone", "user_d114", "Gone Away", False, None),
    ("u-existing", "existing-name", None, False, "editor"),
    ("u-jane", "jane", None, False, "editor"),
    ("u-jane110", "jane-110", None, False, "editor"),
    # user_d users (publishers, so that they stay): id order decides clashes
    ("u-01", "user_d101", "John Smith", False, "editor"),
    ("u-02", "user_d100", "john smith", False, "editor"),
    ("u-03", "user_d102", "Zoë O'Brien", False, "editor"),
    ("u-04", "user_d103", None, False, "editor"),
    ("u-05", "user_d104", "!!", False, "editor"),
    ("u-06", "user_d105", "Existing Name", False, "editor"),
    ("u-07", "user_d106", "DGU Site", False, "editor"),
    ("u-08", "user_d107", "user_d108", False, "editor"),
    ("u-09", "user_d109", "x" * 150 + " tail", False, "editor"),
    ("u-10", "user_d110", "Jane", False, "editor"),
    ("u-11", "user_d111", "New", False, "editor"),
    ("u-12", "user_d112", "Ab", False, "editor"),
    ("u-13", "user_d113", "  Mary  --  Jones_ ", False, "admin"),
    ("u-14", "user_d115", "", False, "editor"),
    # names resolved against the names held at the end (issue 15, item 5):
    # user_d117 gives up its name, which user_d116's fullname asks for ...
    ("u-15", "user_d116", "user_d117", False, "editor"),
    ("u-16", "user_d117", "Peter Pan", False, "editor"),
    # ... two users swap names ...
    ("u-17", "user_d120", "user_d121", False, "editor"),
    ("u-18", "user_d121", "user_d120", False, "editor"),
    # ... and a name its user keeps stays taken
    ("u-19", "user_d122", "user_d110", False, "editor"),
    # publishers once, whose admin/editor membership has ended (member rows
    # below): kept, whatever the state of the membership or group
    ("u-former", "former-editor", "Former", False, None),
    ("u-oldorg", "old-org-editor", "Old Org", False, None),
    ("u-grpadmin", "group-admin", "Group Admin", False, None),
]
EXPECTED_NAMES = {
    "u-sysd": "big-boss", "u-01": "john-smith", "u-02": "john-smith-100",
    "u-03": "zoe-o-brien", "u-04": "user_d103", "u-05": "user_d104",
    "u-06": "existing-name-105", "u-07": "dgu-site-106", "u-08": "user_d108",
    "u-09": "x" * 100, "u-10": "user_d110", "u-11": "user_d111",
    "u-12": "user_d112", "u-13": "mary-jones", "u-14": "user_d115",
    "u-15": "user_d117", "u-16": "peter-pan", "u-17": "user_d121",
    "u-18": "user_d120", "u-19": "user_d110-122",
    "u-editor": "editor1", "u-existing": "existing-name", "u-jane": "jane",
}
DELETED_USERS = {"u-lurker", "u-visitor", "u-logged", "u-gone"}
# Their only admin/editor membership has ended (issue 15, item 3).
ONCE_PUBLISHED = {"u-former": "m-former", "u-oldorg": "m-oldorg",
                  "u-grpadmin": "m-grpadmin"}


def scenario_sql() -> str:
    """The hand-made old-site rows, one group per behaviour."""
    rows = ["""
INSERT INTO revision (id, timestamp, author, message, state)
    VALUES ('rev-1', now(), 'oldadmin', 'seed', 'active');
INSERT INTO "group" (id, name, title, type, is_organization, state)
    VALUES ('org-a', 'cabinet-office', 'Cabinet Office', 'organization', true, 'active'),
           ('grp-b', 'a-group', 'A group', 'group', false, 'active'),
           ('org-gone', 'closed-office', 'Closed Office', 'organization', true, 'deleted');
INSERT INTO package (id, name, title, state, type, owner_org, creator_user_id)
    VALUES ('pkg-org', 'organogram-co', 'Organogram CO', 'active', 'dataset', 'org-a', 'u-lurker'),
           ('pkg-la', 'organogram-la', 'Organogram LA', 'active', 'dataset', 'org-a', 'u-editor'),
           ('pkg-plain', 'plain', 'Plain', 'active', 'dataset', 'org-a', NULL);
INSERT INTO resource_group (id, package_id, label, state)
    VALUES ('rg-org', 'pkg-org', 'default', 'active'),
           ('rg-la', 'pkg-la', 'default', 'active'),
           ('rg-plain', 'pkg-plain', 'default', 'active');
INSERT INTO resource (id, resource_group_id, url, format, description, state, position)
    VALUES
    ('r-org-csv', 'rg-org', 'https://data.gov.uk/sites/default/files/organogram/co/2017-03-31/senior.csv', 'CSV', 'Senior', 'active', 0),
    ('r-org-csv-deleted', 'rg-org', 'https://data.gov.uk/sites/default/files/organogram/co/old.csv', 'CSV', 'Old', 'deleted', 1),
    ('r-org-pdf', 'rg-org', 'https://data.gov.uk/sites/default/files/organogram/co/chart.pdf', 'PDF', 'Chart', 'active', 2),
    ('r-org-viewer', 'rg-org', 'https://data.gov.uk/organogram/cabinet-office', '', 'Organogram viewer', 'active', 3),
    ('r-la-csv', 'rg-la', 'https://data.gov.uk/sites/default/files/organogram/la/junior.csv', '', 'Junior', 'active', 0),
    ('r-la-other', 'rg-la', 'https://example.com/other.csv', 'CSV', 'Other', 'active', 1),
    ('r-plain-csv', 'rg-plain', 'https://data.gov.uk/sites/default/files/plain/data.csv', 'CSV', 'Plain', 'active', 0);
INSERT INTO resource_revision (id, resource_group_id, url, revision_id, continuity_id, state)
    VALUES ('r-org-csv', 'rg-org', 'https://data.gov.uk/sites/default/files/organogram/co/2017-03-31/senior.csv', 'rev-1', 'r-org-csv', 'active');
INSERT INTO package_extra (id, package_id, key, value, state) VALUES
    ('e-org-schema', 'pkg-org', 'schema', '["d3c0b23f-6979-45e4-88ed-d2ab59b005d0"]', 'active'),
    ('e-org-theme', 'pkg-org', 'theme-primary', 'Government', 'active'),
    ('e-org-import', 'pkg-org', 'import_source', 'organograms_v2', 'active'),
    ('e-org-ind', 'pkg-org', 'individual_resources', '[{"url": "x"}]', 'active'),
    ('e-la-schema', 'pkg-la', 'schema', '["538b857a-64ba-490e-8440-0e32094a28a7"]', 'active'),
    ('e-la-add', 'pkg-la', 'additional_resources', '[]', 'active'),
    ('e-la-ts', 'pkg-la', 'timeseries_resources', '[]', 'active'),
    ('e-plain-schema', 'pkg-plain', 'schema', '["0f6d8a3c-other"]', 'active'),
    ('e-plain-theme', 'pkg-plain', 'theme-primary', 'Something Else', 'active'),
    ('e-plain-theme2', 'pkg-plain', 'theme-secondary', 'Health', 'active');
INSERT INTO package_extra_revision (id, package_id, key, value, state, revision_id, continuity_id) VALUES
    ('e-org-ind', 'pkg-org', 'individual_resources', '[]', 'active', 'rev-1', 'e-org-ind'),
    ('e-la-add', 'pkg-la', 'additional_resources', '[]', 'active', 'rev-1', 'e-la-add'),
    ('e-org-theme', 'pkg-org', 'theme-primary', 'Government', 'active', 'rev-1', 'e-org-theme');
INSERT INTO tag (id, name) VALUES ('t-1', 'economy'), ('t-2', 'health');
INSERT INTO package_tag (id, package_id, tag_id, state)
    VALUES ('pt-1', 'pkg-org', 't-1', 'active'), ('pt-2', 'pkg-la', 't-2', 'active');
INSERT INTO package_tag_revision (id, package_id, tag_id, state, revision_id, continuity_id)
    VALUES ('pt-1', 'pkg-org', 't-1', 'active', 'rev-1', 'pt-1'),
           ('pt-2', 'pkg-la', 't-2', 'active', 'rev-1', 'pt-2');
"""]
    for number, (title, _slug) in enumerate(THEMES.items()):
        rows.append(
            f"INSERT INTO package (id, name, state, type) VALUES "
            f"('pkg-theme-{number}', 'theme-{number}', 'active', 'dataset');\n"
            f"INSERT INTO package_extra (id, package_id, key, value, state) VALUES "
            f"('e-theme-{number}', 'pkg-theme-{number}', 'theme-primary', "
            f"{quote(title)}, 'active');\n")
    for user_id, name, fullname, sysadmin, capacity in USERS:
        rows.append(
            f'INSERT INTO "user" (id, name, fullname, sysadmin, state, email) VALUES '
            f"({quote(user_id)}, {quote(name)}, {quote(fullname)}, {sysadmin}, "
            f"'active', {quote(name + '@example.org')});\n")
        if capacity:
            rows.append(
                "INSERT INTO member (id, group_id, table_id, table_name, capacity, state) "
                f"VALUES ('m-{user_id}', 'org-a', {quote(user_id)}, 'user', "
                f"{quote(capacity)}, 'active');\n")
    rows.append("""
-- a membership that is not publishing, and one that has ended
INSERT INTO member (id, group_id, table_id, table_name, capacity, state, revision_id) VALUES
    ('m-lurker', 'grp-b', 'u-lurker', 'user', 'member', 'active', 'rev-1'),
    ('m-former', 'org-a', 'u-former', 'user', 'editor', 'deleted', 'rev-1'),
    ('m-oldorg', 'org-gone', 'u-oldorg', 'user', 'editor', 'active', 'rev-1'),
    ('m-grpadmin', 'grp-b', 'u-grpadmin', 'user', 'admin', 'deleted', 'rev-1'),
    ('m-pkg', 'org-a', 'pkg-org', 'package', 'organization', 'active', 'rev-1');
INSERT INTO member_revision (id, group_id, table_id, table_name, capacity, state, revision_id, continuity_id) VALUES
    ('m-lurker', 'grp-b', 'u-lurker', 'user', 'member', 'active', 'rev-1', 'm-lurker'),
    ('m-former', 'org-a', 'u-former', 'user', 'editor', 'active', 'rev-1', 'm-former'),
    ('m-u-editor', 'org-a', 'u-editor', 'user', 'editor', 'active', 'rev-1', 'm-u-editor');
-- everything that references the lurker (and the same for a kept editor)
INSERT INTO authorization_group (id, name) VALUES ('ag-1', 'publishers');
INSERT INTO user_object_role (id, user_id, context, role) VALUES
    ('uor-l1', 'u-lurker', 'Package', 'editor'), ('uor-l2', 'u-lurker', 'Group', 'admin'),
    ('uor-l3', 'u-lurker', 'System', 'reader'), ('uor-l4', 'u-lurker', 'AuthorizationGroup', 'reader'),
    ('uor-v1', 'u-visitor', 'System', 'reader'), ('uor-e1', 'u-editor', 'Package', 'editor');
INSERT INTO package_role (user_object_role_id, package_id) VALUES ('uor-l1', 'pkg-org'), ('uor-e1', 'pkg-org');
INSERT INTO group_role (user_object_role_id, group_id) VALUES ('uor-l2', 'grp-b');
INSERT INTO system_role (user_object_role_id) VALUES ('uor-l3'), ('uor-v1');
INSERT INTO authorization_group_role (user_object_role_id, authorization_group_id) VALUES ('uor-l4', 'ag-1');
INSERT INTO authorization_group_user (id, authorization_group_id, user_id) VALUES
    ('agu-1', 'ag-1', 'u-lurker'), ('agu-2', 'ag-1', 'u-editor');
INSERT INTO rating (id, user_id, package_id, rating, created) VALUES
    ('rt-1', 'u-lurker', 'pkg-org', 4, now()), ('rt-2', 'u-editor', 'pkg-org', 5, now());
INSERT INTO dashboard (user_id, activity_stream_last_viewed) VALUES ('u-lurker', now()), ('u-editor', now());
INSERT INTO user_following_user (follower_id, object_id, datetime) VALUES
    ('u-lurker', 'u-editor', now()), ('u-editor', 'u-lurker', now()), ('u-editor', 'u-admin', now());
INSERT INTO user_following_dataset (follower_id, object_id, datetime) VALUES
    ('u-lurker', 'pkg-org', now()), ('u-editor', 'pkg-org', now());
INSERT INTO user_following_group (follower_id, object_id, datetime) VALUES
    ('u-lurker', 'org-a', now()), ('u-editor', 'org-a', now());
INSERT INTO activity (id, timestamp, user_id, object_id, activity_type, data) VALUES
    ('act-about-lurker', now(), 'u-lurker', 'u-lurker', 'new user', '{"user": {"email": "lurker@example.org"}}'),
    ('act-by-lurker', now(), 'u-lurker', 'pkg-org', 'changed package', '{}'),
    ('act-about-editor', now(), 'u-editor', 'u-editor', 'new user', '{}');
INSERT INTO activity_detail (id, activity_id, object_id, object_type, activity_type) VALUES
    ('ad-1', 'act-about-lurker', 'u-lurker', 'User', 'new'),
    ('ad-2', 'act-by-lurker', 'pkg-org', 'Package', 'changed');
""")
    return "".join(rows)


HARVEST_ROWS = f"""
INSERT INTO harvest_source (id, name, url, type, active, user_id) VALUES
    ('hs-single', 'single', 'https://a.example/doc.xml', 'gemini-single', true, 'u-editor'),
    ('hs-csw', 'csw', 'https://b.example/csw', 'gemini-csw', true, 'u-lurker'),
    ('hs-waf', 'waf', 'https://c.example/waf/', 'gemini-waf', true, NULL),
    ('hs-json', 'json', 'https://d.example/data.json', 'data_json', true, NULL),
    ('hs-dkan', 'dkan', 'https://dkan.example/', 'dkan', true, NULL),
    ('hs-ckan', 'ckan', 'https://ckan.example', 'ckan', true, NULL),
    ('{DUPLICATE_SOURCE}', 'dup', 'https://c.example/waf/', 'gemini-waf', true, NULL);
INSERT INTO harvest_job (id, source_id, status) VALUES
    ('hj-dup', '{DUPLICATE_SOURCE}', 'Finished'), ('hj-keep', 'hs-csw', 'Finished');
INSERT INTO harvest_object (id, guid, harvest_job_id, harvest_source_id, package_id) VALUES
    ('ho-dup-1', 'g1', 'hj-dup', '{DUPLICATE_SOURCE}', 'pkg-plain'),
    ('ho-dup-2', 'g2', NULL, '{DUPLICATE_SOURCE}', NULL),
    ('ho-keep', 'g3', 'hj-keep', 'hs-csw', 'pkg-plain');
INSERT INTO harvest_object_extra (id, harvest_object_id, key, value) VALUES
    ('hoe-dup', 'ho-dup-1', 'status', 'new'), ('hoe-dup-2', 'ho-dup-2', 'status', 'new'),
    ('hoe-keep', 'ho-keep', 'status', 'new');
INSERT INTO harvest_object_error (id, harvest_object_id, message) VALUES
    ('herr-dup', 'ho-dup-2', 'bad'), ('herr-keep', 'ho-keep', 'bad');
INSERT INTO harvest_gather_error (id, harvest_job_id, message) VALUES
    ('hge-dup', 'hj-dup', 'bad'), ('hge-keep', 'hj-keep', 'bad');
INSERT INTO harvest_coupled_resource (id, service_record_package_id, dataset_record_package_id)
    VALUES ('hcr-1', 'pkg-plain', 'pkg-org');
"""


def quote(value) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def scalar(url: str, statement: str, params=None):
    return query(url, statement, params)[0][0]


def build_schema_22(url: str) -> None:
    """The CKAN 2.2 schema as CKAN's own migrations build it, marked the way a
    real 2.2 dump is (sqlalchemy-migrate version 71, no alembic_version)."""
    result = run_command(["ckan", "-c", TEST_INI, "db", "upgrade", "-v",
                          "c16f081ef73a"], db_url=url, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    execute(url, """
        DROP TABLE alembic_version;
        CREATE TABLE migrate_version (repository_id varchar(250) PRIMARY KEY,
                                      repository_path text, version integer);
        INSERT INTO migrate_version VALUES ('Ckan',
            '/usr/lib/ckan/default/src/ckan/ckan/migration', 71);""")


@pytest.fixture(scope="session")
def schema22_templates(pg_admin_url, ckan_db_url):
    """Template databases: 'bare' (the 2.2 schema), 'scenario' (plus harvest
    and DGU tables, the continuity indexes and the hand-made rows) and
    'scenario_no_optional' (the rows without harvest or DGU tables)."""
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"b1_{kind}_{suffix}"
             for kind in ("bare", "scenario", "scenario_no_optional")}
    created = []
    try:
        bare = create_database(pg_admin_url, ckan_db_url, names["bare"])
        created.append(names["bare"])
        build_schema_22(bare)
        for kind, optional in (("scenario", True), ("scenario_no_optional", False)):
            url = create_database(pg_admin_url, ckan_db_url, names[kind],
                                  names["bare"])
            created.append(names[kind])
            execute(url, scenario_sql())
            if optional:
                execute(url, HARVEST_DDL + DGU_DDL + HARVEST_ROWS)
                execute(url, "".join(
                    f"CREATE INDEX {index} ON {table} (continuity_id);"
                    for index, table in CONTINUITY_INDEXES.items()))
        yield names
    finally:
        for name in reversed(created):
            drop_database(pg_admin_url, name)


@pytest.fixture
def site22(make_database, schema22_templates):
    """A fresh copy of the scenario (with harvest and DGU tables)."""
    return make_database(template=schema22_templates["scenario"])


@pytest.fixture(scope="module")
def migrated(schema22_templates, pg_admin_url, ckan_db_url):
    """(URL, AppliedMigration): the scenario after 001 with SETTINGS, shared
    by the tests that only read the result (one run instead of fifteen)."""
    name = f"b1_migrated_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, ckan_db_url, name,
                          schema22_templates["scenario"])
    try:
        yield url, run_001(url)
    finally:
        drop_database(pg_admin_url, name)


def run_001(url: str, settings=None) -> runner.AppliedMigration:
    """001 through the runner, committed."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            applied = runner.apply_pending(connection, settings=SETTINGS
                                           if settings is None else settings)
            connection.commit()
    finally:
        engine.dispose()
    assert [migration.name for migration in applied] == ["001_bytemark_to_govuk.sql"]
    return applied[0]


def run_001_again(url: str, settings=None) -> list[str]:
    """The file once more, bypassing the ledger (which would skip it)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            runner.apply_settings(connection, SETTINGS if settings is None else settings)
            notices = runner.run_file(connection, runner.discover()[0])
            connection.commit()
    finally:
        engine.dispose()
    return notices


def psql_001(url: str, settings: dict, path: str = MIGRATION) -> subprocess.CompletedProcess:
    """The operator's route: psql alone, stop on error, one transaction."""
    args = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    for name, value in settings.items():
        args += ["-c", f"SET {name} = {quote(value)}"]
    args += ["-f", path]
    return subprocess.run(args, env=db.libpq_env(url), text=True,
                          capture_output=True, timeout=300)


def dump(url: str, *options: str) -> str:
    """A plain pg_dump, without the random \\restrict key pg_dump 15.14+
    writes, so that two dumps of the same data compare equal."""
    result = subprocess.run(["pg_dump", "--no-owner", "--no-acl", *options],
                            env=db.libpq_env(url), text=True, capture_output=True,
                            timeout=300, check=True)
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def data_dump(url: str) -> str:
    return dump(url, "--data-only")


def full_dump(url: str) -> str:
    return dump(url)


def users(url: str) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in
            query(url, 'SELECT id, name, sysadmin FROM "user"')}


# --- step 1: tags -----------------------------------------------------------

def test_tags_are_removed_with_their_revisions(migrated):
    site22, applied = migrated
    for table in ("package_tag_revision", "package_tag", "tag"):
        assert scalar(site22, f"SELECT count(*) FROM {table}") == 0, table
    assert runner.StepNotice(1, "package_tag rows deleted", 2) in applied.steps
    assert runner.StepNotice(1, "tag rows deleted", 2) in applied.steps


# --- step 2: extras ---------------------------------------------------------

def test_resource_list_extras_are_deleted_with_their_revisions(migrated):
    site22, _ = migrated
    keys = ("individual_resources", "additional_resources", "timeseries_resources")
    assert scalar(site22, "SELECT count(*) FROM package_extra WHERE key IN %s", (keys,)) == 0
    assert scalar(site22, "SELECT count(*) FROM package_extra_revision "
                          "WHERE key IN %s", (keys,)) == 0
    # other revision rows stay
    assert scalar(site22, "SELECT count(*) FROM package_extra_revision "
                          "WHERE id = 'e-org-theme'") == 1
    assert scalar(site22, "SELECT value FROM package_extra WHERE id = 'e-org-import'") \
        == "organograms_v2"


def test_every_theme_title_is_mapped_to_its_slug_and_others_are_untouched(migrated):
    site22, applied = migrated
    mapped = dict(query(site22, """
        SELECT e.value, p.value FROM package_extra p
        JOIN (VALUES """ + ",".join(
            f"({quote(f'e-theme-{n}')}, {quote(title)})"
            for n, title in enumerate(THEMES)) + """) AS e (id, value)
          ON e.id = p.id"""))
    assert mapped == THEMES
    assert scalar(site22, "SELECT value FROM package_extra WHERE id = 'e-org-theme'") \
        == "government"
    assert scalar(site22, "SELECT value FROM package_extra WHERE id = 'e-plain-theme'") \
        == "Something Else"
    assert scalar(site22, "SELECT value FROM package_extra WHERE id = 'e-plain-theme2'") \
        == "Health"   # theme-secondary is not mapped
    assert runner.StepNotice(2, "theme-primary values mapped to slugs", 13) in applied.steps


def test_schema_extra_is_renamed_to_schema_vocabulary(migrated):
    site22, _ = migrated
    assert scalar(site22, "SELECT count(*) FROM package_extra WHERE key = 'schema'") == 0
    assert sorted(query(site22, "SELECT id, value FROM package_extra "
                                "WHERE key = 'schema-vocabulary'")) == [
        ("e-la-schema", LOCAL_SCHEMA), ("e-org-schema", CENTRAL_SCHEMA),
        ("e-plain-schema", '["0f6d8a3c-other"]')]


# --- steps 3 and 4: organogram resources ------------------------------------

def test_organogram_viewer_resources_are_marked_deleted(migrated):
    site22, _ = migrated
    assert scalar(site22, "SELECT state FROM resource WHERE id = 'r-org-viewer'") == "deleted"
    assert scalar(site22, "SELECT count(*) FROM resource WHERE state = 'deleted'") == 2


def test_organogram_csv_urls_are_rewritten_to_the_configured_base(migrated):
    site22, _ = migrated
    urls = dict(query(site22, "SELECT id, url FROM resource"))
    new = NEW_BASE + "/"
    assert urls["r-org-csv"] == new + "organogram/co/2017-03-31/senior.csv"
    assert urls["r-la-csv"] == new + "organogram/la/junior.csv"
    # deleted, not a CSV, not under the old prefix, not an organogram dataset
    assert urls["r-org-csv-deleted"].startswith(OLD_FILES)
    assert urls["r-org-pdf"].startswith(OLD_FILES)
    assert urls["r-la-other"] == "https://example.com/other.csv"
    assert urls["r-plain-csv"] == OLD_FILES + "plain/data.csv"
    # history is left as it was
    assert scalar(site22, "SELECT url FROM resource_revision WHERE id = 'r-org-csv'") \
        .startswith(OLD_FILES)


def test_organogram_urls_are_left_alone_without_a_base_url(site22):
    applied = run_001(site22, {**SETTINGS, runner.ORGANOGRAM_BASE_URL_GUC: ""})
    assert scalar(site22, "SELECT url FROM resource WHERE id = 'r-org-csv'") \
        .startswith(OLD_FILES)
    assert any(step.step == 4 and "skipped" in step.description for step in applied.steps)


# --- step 5: non-publishing users -------------------------------------------

def test_non_publishing_users_are_deleted_and_publishers_kept(migrated):
    site22, applied = migrated
    remaining = users(site22)
    assert not DELETED_USERS & set(remaining)
    for user_id, _name, _fullname, sysadmin, capacity in USERS:
        if user_id not in DELETED_USERS:
            assert user_id in remaining, user_id
            assert sysadmin or capacity in ("admin", "editor") or \
                user_id in ONCE_PUBLISHED
    assert runner.StepNotice(5, "non-publishing users deleted", len(DELETED_USERS)) \
        in applied.steps


def test_a_user_who_was_ever_an_admin_or_editor_is_kept_with_the_membership(
        migrated):
    site22, _ = migrated
    members = query(site22, "SELECT table_id, id, state FROM member "
                            "WHERE table_id IN %s", (tuple(ONCE_PUBLISHED),))
    assert {user_id: member_id for user_id, member_id, _ in members} == \
        ONCE_PUBLISHED
    assert scalar(site22, "SELECT count(*) FROM member_revision "
                          "WHERE id = 'm-former'") == 1


# (table, column) pairs that point at users in the 2.2 schema
USER_REFERENCES = [
    ("user_object_role", "user_id"), ("authorization_group_user", "user_id"),
    ("rating", "user_id"), ("dashboard", "user_id"),
    ("user_following_user", "follower_id"), ("user_following_user", "object_id"),
    ("user_following_dataset", "follower_id"), ("user_following_group", "follower_id"),
    ("package", "creator_user_id"), ("harvest_source", "user_id"),
]


def test_nothing_references_a_deleted_user(migrated):
    site22, _ = migrated
    deleted = tuple(DELETED_USERS)
    for table, column in USER_REFERENCES:
        assert scalar(site22, f"SELECT count(*) FROM {table} WHERE {column} IN %s",
                      (deleted,)) == 0, (table, column)
    assert scalar(site22, "SELECT count(*) FROM member WHERE table_name = 'user' "
                          "AND table_id IN %s", (deleted,)) == 0
    assert scalar(site22, "SELECT count(*) FROM member_revision WHERE table_name = 'user' "
                          "AND table_id IN %s", (deleted,)) == 0
    assert scalar(site22, "SELECT count(*) FROM activity WHERE object_id IN %s",
                  (deleted,)) == 0
    # the old authorization rows hanging off their user_object_role rows
    assert query(site22, "SELECT user_object_role_id FROM package_role") == [("uor-e1",)]
    for table in ("group_role", "system_role", "authorization_group_role"):
        assert scalar(site22, f"SELECT count(*) FROM {table}") == 0, table


def test_what_a_kept_user_has_stays(migrated):
    site22, _ = migrated
    assert query(site22, "SELECT user_id FROM rating") == [("u-editor",)]
    assert query(site22, "SELECT user_id FROM dashboard") == [("u-editor",)]
    assert query(site22, "SELECT user_id FROM authorization_group_user") == [("u-editor",)]
    assert query(site22, "SELECT follower_id, object_id FROM user_following_user") == [
        ("u-editor", "u-admin")]
    assert query(site22, "SELECT follower_id FROM user_following_dataset") == [("u-editor",)]
    assert query(site22, "SELECT follower_id FROM user_following_group") == [("u-editor",)]
    assert scalar(site22, "SELECT count(*) FROM member_revision WHERE id = 'm-u-editor'") == 1
    assert scalar(site22, "SELECT creator_user_id FROM package WHERE id = 'pkg-la'") \
        == "u-editor"
    assert scalar(site22, "SELECT user_id FROM harvest_source WHERE id = 'hs-single'") \
        == "u-editor"
    # dataset memberships are not user memberships
    assert scalar(site22, "SELECT count(*) FROM member WHERE id = 'm-pkg'") == 1


def test_activities_by_deleted_users_on_datasets_stay_those_about_them_go(migrated):
    site22, _ = migrated
    assert sorted(query(site22, "SELECT id FROM activity")) == [
        ("act-about-editor",), ("act-by-lurker",)]
    assert query(site22, "SELECT id FROM activity_detail") == [("ad-2",)]


def test_deleted_users_datasets_and_harvest_sources_stay(migrated):
    site22, _ = migrated
    assert query(site22, "SELECT creator_user_id FROM package WHERE id = 'pkg-org'") \
        == [(None,)]
    assert query(site22, "SELECT user_id FROM harvest_source WHERE id = 'hs-csw'") \
        == [(None,)]


# --- step 6: sysadmins ------------------------------------------------------

def test_sysadmins_are_demoted_but_the_kept_ones_and_the_site_user(migrated):
    site22, applied = migrated
    sysadmins = {row[0] for row in query(site22, 'SELECT name FROM "user" WHERE sysadmin')}
    assert sysadmins == {"keepme", "dgu-site"}
    remaining = users(site22)
    assert remaining["u-sys"] == ("oldadmin", False)   # demoted, not deleted
    assert remaining["u-sysd"] == ("big-boss", False)
    demoted = query(site22, "SELECT user_id, user_name, migration, demoted_at IS NOT NULL "
                            "FROM datagovuk.demoted_sysadmins ORDER BY user_id")
    assert demoted == [("u-sys", "oldadmin", "001_bytemark_to_govuk.sql", True),
                       ("u-sysd", "big-boss", "001_bytemark_to_govuk.sql", True)]
    assert runner.StepNotice(6, "sysadmins demoted", 2) in applied.steps


def test_without_settings_every_sysadmin_is_demoted(site22):
    run_001(site22, {})
    assert scalar(site22, 'SELECT count(*) FROM "user" WHERE sysadmin') == 0
    assert scalar(site22, "SELECT count(*) FROM datagovuk.demoted_sysadmins") == 4


def test_the_site_user_is_never_deleted_even_when_not_a_sysadmin(site22):
    execute(site22, """UPDATE "user" SET sysadmin = false WHERE id = 'u-site'""")
    notices = run_001(site22).notices
    assert users(site22)["u-site"] == ("dgu-site", False)
    assert any("site user dgu-site exists but is not a sysadmin" in notice
               for notice in notices)


# --- step 7: user_d names ---------------------------------------------------

def test_user_d_users_get_valid_unique_names_from_their_fullname(migrated):
    site22, applied = migrated
    remaining = users(site22)
    assert {user_id: remaining[user_id][0] for user_id in EXPECTED_NAMES} == EXPECTED_NAMES
    names = [name for name, _ in remaining.values()]
    assert len(names) == len(set(names))
    valid = re.compile(r"^[a-z0-9_-]{3,100}$")
    renamed = [remaining[user_id][0] for user_id, name in EXPECTED_NAMES.items()
               if not name.startswith("user_d")]
    assert all(valid.match(name) for name in renamed), renamed
    assert runner.StepNotice(7, "user_d users renamed from their fullname", 14) \
        in applied.steps


# --- step 8: harvest --------------------------------------------------------

def test_harvest_sources_are_renamed_and_the_duplicate_is_gone(migrated):
    site22, _ = migrated
    sources = {row[0]: row[1:] for row in query(site22,
                                                "SELECT id, type, url FROM harvest_source")}
    assert sources == {
        "hs-single": ("single-doc", "https://a.example/doc.xml"),
        "hs-csw": ("csw", "https://b.example/csw"),
        "hs-waf": ("waf", "https://c.example/waf/"),
        "hs-json": ("dcat_json", "https://d.example/data.json"),
        "hs-dkan": ("dcat_json", "https://dkan.example/data.json"),
        "hs-ckan": ("ckan", "https://ckan.example"),
    }
    assert query(site22, "SELECT id FROM harvest_job") == [("hj-keep",)]
    assert query(site22, "SELECT id FROM harvest_object") == [("ho-keep",)]
    assert query(site22, "SELECT id FROM harvest_object_extra") == [("hoe-keep",)]
    assert query(site22, "SELECT id FROM harvest_object_error") == [("herr-keep",)]
    assert query(site22, "SELECT id FROM harvest_gather_error") == [("hge-keep",)]
    # the harvested dataset itself stays
    assert scalar(site22, "SELECT state FROM package WHERE id = 'pkg-plain'") == "active"


# --- step 9: continuity indexes ---------------------------------------------

def test_continuity_indexes_and_helper_indexes_are_dropped(migrated):
    site22, applied = migrated
    left = query(site22, "SELECT indexname FROM pg_indexes WHERE indexname IN %s "
                         "OR indexname LIKE 'datagovuk_001_%%'",
                 (tuple(CONTINUITY_INDEXES),))
    assert left == []
    assert runner.StepNotice(9, "continuity indexes dropped", 5) in applied.steps


# --- the file as a whole ----------------------------------------------------

def test_a_second_run_changes_nothing(site22):
    run_001(site22)
    before = data_dump(site22)
    schema_before = full_dump(site22)
    notices = run_001_again(site22)
    assert data_dump(site22) == before
    assert full_dump(site22) == schema_before
    changes = [step.rows for step in runner.parse_step_notices(notices)
               if "keeping their name" not in step.description]
    assert changes and set(changes) == {0}


def test_psql_route_gives_the_same_result_as_the_runner(site22, make_database,
                                                        schema22_templates):
    result = psql_001(site22, SETTINGS)
    assert result.returncode == 0, result.stderr
    assert "step 5: non-publishing users deleted: 4" in result.stderr
    via_runner = make_database(template=schema22_templates["scenario"])
    run_001(via_runner)
    execute(via_runner, "DROP TABLE datagovuk.applied_migrations")
    strip = lambda dump: "\n".join(line for line in dump.splitlines()
                                   if "demoted_sysadmins" not in line
                                   and not line.startswith(("u-sys\t", "u-sysd\t")))
    assert strip(data_dump(site22)) == strip(data_dump(via_runner))
    # and the psql route is idempotent too
    before = data_dump(site22)
    again = psql_001(site22, SETTINGS)
    assert again.returncode == 0, again.stderr
    assert data_dump(site22) == before


def test_psql_route_takes_settings_from_pgoptions(site22):
    env = db.libpq_env(site22)
    env["PGOPTIONS"] = ("-c datagovuk.keep_sysadmins=oldadmin "
                        "-c datagovuk.site_user=dgu-site")
    result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1",
                             "--single-transaction", "-f", MIGRATION],
                            env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert {row[0] for row in query(site22, 'SELECT name FROM "user" WHERE sysadmin')} \
        == {"oldadmin", "dgu-site"}
    assert "skipped: datagovuk.organogram_base_url is not set" in result.stderr


def test_works_without_harvest_and_dgu_tables(make_database, schema22_templates):
    url = make_database(template=schema22_templates["scenario_no_optional"])
    applied = run_001(url)
    assert to_regclass(url, "harvest_source") is None
    assert runner.StepNotice(8, "harvest sources (skipped: no harvest tables)", 0) \
        in applied.steps
    assert runner.StepNotice(5, "non-publishing users deleted", len(DELETED_USERS)) \
        in applied.steps
    assert {user_id: users(url)[user_id][0] for user_id in EXPECTED_NAMES} == EXPECTED_NAMES
    before = data_dump(url)
    run_001_again(url)
    assert data_dump(url) == before


def test_works_on_an_empty_22_database(make_database, schema22_templates):
    url = make_database(template=schema22_templates["bare"])
    applied = run_001(url)
    assert {step.rows for step in applied.steps} == {0}


def to_regclass(url: str, name: str):
    return scalar(url, "SELECT to_regclass(%s)::text", (name,))


def test_a_failure_halfway_changes_nothing(site22):
    # a trigger makes step 5 fail after steps 1 to 4 have done their work
    execute(site22, """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'no deleting users today'; END $$;
        CREATE TRIGGER refuse BEFORE DELETE ON "user" FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    before = full_dump(site22)
    with pytest.raises(OperatorError) as raised:
        run_001(site22)
    assert str(raised.value).startswith("migration 001_bytemark_to_govuk.sql failed: ")
    assert "no deleting users today" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert full_dump(site22) == before
    result = psql_001(site22, SETTINGS)
    assert result.returncode != 0
    assert "no deleting users today" in result.stderr
    assert full_dump(site22) == before


# --- the generated old site (ckanext.datagovuk.testing.oldsite) ---

def old_site_settings() -> dict:
    """What `migrate` passes with test.ini: no kept sysadmins, test.ini's
    organogram base URL and site user."""
    return {runner.KEEP_SYSADMINS_GUC: "",
            runner.ORGANOGRAM_BASE_URL_GUC:
                "https://s3-eu-west-1.amazonaws.com/datagovuk-test-ckan-organogram/",
            runner.SITE_USER_GUC: oldsite.KNOWN_CASES.site_user}


def test_generated_old_site(old_site):
    known = oldsite.KNOWN_CASES
    ids = dict(query(old_site, 'SELECT name, id FROM "user"'))
    user_count = len(ids)
    applied = run_001(old_site, old_site_settings())
    names = dict(query(old_site, 'SELECT id, name FROM "user"'))

    assert scalar(old_site, "SELECT count(*) FROM tag") == 0
    assert scalar(old_site, "SELECT count(*) FROM package_tag_revision") == 0
    # users: publishers and sysadmins stay, the others go
    for name in (*known.pseudo_users, known.non_publishing_user_d,
                 *known.non_publishing_with_history):
        assert ids[name] not in names, name
    for name in (known.publishing_admin, known.publishing_editor,
                 known.active_and_deleted_memberships,
                 known.deleted_membership_only, *known.sysadmins,
                 *known.same_fullname_users, *known.invalid_fullnames):
        assert ids[name] in names, name
    deleted = user_count - len(names)
    assert runner.StepNotice(5, "non-publishing users deleted", deleted) in applied.steps
    # sysadmins: only the site user is left
    assert [row[0] for row in query(old_site, 'SELECT name FROM "user" WHERE sysadmin')] \
        == [known.site_user]
    demoted = dict(query(old_site, "SELECT user_id, user_name FROM datagovuk.demoted_sysadmins"))
    assert set(demoted) == {ids[name] for name in known.sysadmins if name != known.site_user}
    assert all(demoted[user_id] == names[user_id] for user_id in demoted)
    # names: valid and unique; clashes resolved; unusable fullnames kept
    valid = re.compile(r"^[a-z0-9_-]{3,100}$")
    renamed = [name for user_id, name in names.items()
               if name not in ids]
    assert renamed and all(valid.match(name) for name in renamed), renamed
    assert len(set(names.values())) == len(names)
    clash = sorted(known.same_fullname_users, key=lambda name: ids[name])
    assert names[ids[clash[0]]] == "john-smith"
    assert names[ids[clash[1]]] == "john-smith-" + clash[1][len("user_d"):]
    assert names[ids["user_d2009"]] == "harvest-2009"
    assert names[ids["user_d2003"]] == "mary-o-brien-smith"
    assert names[ids["user_d2004"]] == "jose-nunez"
    for kept_name in ("user_d2005", "user_d2006", "user_d2007"):
        assert names[ids[kept_name]] == kept_name
    # extras and resources
    assert scalar(old_site, "SELECT count(*) FROM package_extra WHERE key IN "
                  "('schema', 'individual_resources', 'additional_resources', "
                  "'timeseries_resources')") == 0
    assert scalar(old_site, "SELECT count(*) FROM package_extra WHERE key = "
                  "'theme-primary' AND value = ANY(%s)", (list(THEMES),)) == 0
    assert scalar(old_site, "SELECT count(*) FROM resource WHERE state = 'active' "
                  "AND description = 'Organogram viewer'") == 0
    assert scalar(old_site, """
        SELECT count(*) FROM resource r JOIN resource_group g ON g.id = r.resource_group_id
        JOIN package_extra e ON e.package_id = g.package_id AND e.key = 'schema-vocabulary'
        WHERE r.state = 'active' AND r.url LIKE %s AND lower(r.format) = 'csv'
          AND (e.value LIKE %s OR e.value LIKE %s)""",
                  (OLD_FILES + "%", "%d3c0b23f%", "%538b857a%")) == 0
    assert scalar(old_site, "SELECT count(*) FROM resource WHERE url = %s",
                  (known.non_organogram_file_url,)) >= 1
    # harvest
    types = {row[0] for row in query(old_site, "SELECT type FROM harvest_source")}
    assert not types & {"gemini-single", "gemini-csw", "gemini-waf", "data_json", "dkan"}
    assert scalar(old_site, "SELECT count(*) FROM harvest_source WHERE id = %s",
                  (DUPLICATE_SOURCE,)) == 0
    assert scalar(old_site, "SELECT count(*) FROM harvest_source WHERE url = %s",
                  (known.dkan_source_url.rstrip("/") + "/data.json",)) == 1
    assert scalar(old_site, "SELECT count(*) FROM pg_indexes WHERE indexname IN %s",
                  (tuple(CONTINUITY_INDEXES),)) == 0
    # and again: nothing changes
    before = data_dump(old_site)
    run_001_again(old_site, old_site_settings())
    assert data_dump(old_site) == before


def test_generated_old_site_without_harvest_tables(old_site_no_harvest):
    applied = run_001(old_site_no_harvest, old_site_settings())
    assert runner.StepNotice(8, "harvest sources (skipped: no harvest tables)", 0) \
        in applied.steps
    assert scalar(old_site_no_harvest, 'SELECT count(*) FROM "user" WHERE sysadmin') == 1
