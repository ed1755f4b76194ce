"""Build a database that looks like the old data.gov.uk's (CKAN 2.2, "2.2b").

It is the input every other command works on: the tests, the demo and the
benchmark build one with this module instead of needing a copy of the real
site.

* ``build_schema(url, version=71)``: the schema of a legacy CKAN exactly as
  CKAN's own migrations build it (alembic up to the revision of legacy
  ``version``; 71, ``c16f081ef73a``, is CKAN 2.2), with ``alembic_version``
  replaced by sqlalchemy-migrate's ``migrate_version`` = ``version`` (what a
  real dump of that CKAN holds), plus the DGU-only tables, the old
  ckanext-harvest (DGU branch) tables and those of the ``*_continuity_id``
  indexes production carried ahead of migrations 079/080 that the version
  does not create itself.  ``LEGACY_VERSIONS`` are the versions the tests
  build; any from 71 to 89 can be built.
* ``populate(url, datasets=N, seed=S)``: data in realistic proportions,
  deterministic from the seed, bulk loaded with COPY; every case the 001
  data migration treats is present at least once whatever N is (see
  ``KNOWN_CASES``).
* ``write_dump(url, path)``: a custom-format dump, as the import reads it.

    python -m ckanext.datagovuk.testing.oldsite --datasets N [--seed S] \
        [--legacy-version V] [--no-harvest] [--dump PATH] URL
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import alembic_runner, db, traps
from ckanext.datagovuk.errors import OperatorError

Progress = Optional[Callable[[str], None]]

MIN_DATASETS = 20
LEGACY_VERSION = alembic_runner.CKAN_22_LEGACY_VERSION
# The legacy versions the tests build: CKAN 2.2 (71) and later ones that
# changed the schema the generator fills (72 resource views, 74 no resource
# groups, 78 no old authorization tables, 83 no related items, 84
# package.metadata_created, 86 no user.openid).
LEGACY_VERSIONS = (71, 72, 73, 74, 79, 82, 86)
# sqlalchemy-migrate's repository id for CKAN (ckan/migration/migrate.cfg)
# and where the old site had CKAN installed.
MIGRATE_REPOSITORY_ID = "Ckan"
MIGRATE_REPOSITORY_PATH = "/usr/lib/ckan/dgu/src/ckan/ckan/migration"

# The indexes production carried ahead of CKAN's 079/080 (which create them
# again, failing with DuplicateTable): index name -> revision table.
CONTINUITY_INDEXES = {
    "idx_resource_continuity_id": "resource_revision",
    "idx_member_continuity_id": "member_revision",
    "idx_package_continuity_id": "package_revision",
    "idx_package_extra_continuity_id": "package_extra_revision",
    "idx_package_tag_continuity_id": "package_tag_revision",
}
DGU_TABLES = ("data_cache", "publisher_request", "schema", "codelist",
              "commitment")
HARVEST_TABLES = ("harvest_source", "harvest_job", "harvest_object",
                  "harvest_object_extra", "harvest_object_error",
                  "harvest_gather_error", "harvest_coupled_resource")

THEME_SLUGS = {
    "Business & Economy": "business-and-economy",
    "Environment": "environment",
    "Mapping": "mapping",
    "Crime & Justice": "crime-and-justice",
    "Government": "government",
    "Society": "society",
    "Defence": "defence",
    "Government Spending": "government-spending",
    "Towns & Cities": "towns-and-cities",
    "Education": "education",
    "Health": "health",
    "Transport": "transport",
}
ORGANOGRAM_SCHEMA_CENTRAL = "d3c0b23f-6979-45e4-88ed-d2ab59b005d0"
ORGANOGRAM_SCHEMA_LOCAL = "538b857a-64ba-490e-8440-0e32094a28a7"
OLD_FILES_BASE_URL = "https://data.gov.uk/sites/default/files/"
OLD_HARVEST_TYPES = ("gemini-single", "gemini-csw", "gemini-waf",
                     "data_json", "dkan", "ckan")
DUPLICATE_HARVEST_SOURCE_ID = "2c798023-abac-4785-ad19-67bd5c1aed63"
# vdm's expired_timestamp for the current version of a row.
FAR_FUTURE = dt.datetime(9999, 12, 31)

_SPECIAL_NAMESPACE = uuid.UUID("0b1d5173-7e2b-4a51-9d3e-6f1b0c2d4e5a")


def special_id(name: str) -> str:
    """The fixed id of a special row: the same for every seed and scale."""
    return str(uuid.uuid5(_SPECIAL_NAMESPACE, name))


@dataclass(frozen=True)
class KnownCases:
    """The special rows every generated site holds (names are fixed; ids of
    the rows below are ``special_id(<what>)`` where stated)."""
    site_user: str = "test.ckan.net"  # ckan.site_id of test.ini; sysadmin
    pseudo_users: tuple = ("logged_in", "visitor")
    sysadmins_with_membership: tuple = ("dgu_support",)
    sysadmins_without_membership: tuple = ("harvest", "user_d101",
                                           "test.ckan.net")
    # user_d users who are editors of the first publisher (so they stay).
    same_fullname: str = "John Smith"
    same_fullname_users: tuple = ("user_d2001", "user_d2002")
    # fullnames that are not valid CKAN user names (None = NULL).
    invalid_fullnames: dict = field(default_factory=lambda: {
        "user_d2003": "Mary O'Brien-Smith",
        "user_d2004": "José Núñez",
        "user_d2005": "J",
        "user_d2006": "",
        "user_d2007": None,
        "user_d2008": "Ann   LEE",
        "user_d2009": "Harvest",  # derives to an existing user's name
        "user_d2010": "A.N. Other!!",
        "user_d2011": "Bartholomew " * 10,  # longer than 100 characters
    })
    # a non-publishing user_d user (deleted by 001).
    non_publishing_user_d: str = "user_d2012"
    publishing_admin: str = "user_d3101"
    publishing_editor: str = "user_d3102"
    deleted_membership_only: str = "user_d3103"   # editor, membership deleted
    active_and_deleted_memberships: str = "user_d3104"
    # non-publishing users with ratings, followers, dashboard, old auth rows
    non_publishing_with_history: tuple = ("user_d4001", "user_d4002")
    # emails equal but for case: (non-publishing, publishing) and two
    # active publishing users.
    email_case_clash_deleted_vs_kept: tuple = ("user_d3001", "user_d3002")
    email_case_clash_kept_pair: tuple = ("user_d3003", "user_d3004")
    # datasets
    organogram_central_dataset: str = "organogram-senior-staff-cabinet-office"
    organogram_local_dataset: str = "organogram-staff-local-authority"
    schema_dataset: str = "spend-over-25k-with-schema"
    resource_lists_dataset: str = "dataset-with-resource-lists"
    null_extra_dataset: str = "dataset-with-null-extra"
    null_extra_key: str = "mandate"
    deleted_dataset: str = "deleted-dataset-example"
    deleted_resource_dataset: str = "dataset-with-deleted-resource"
    unmapped_theme: str = "Economy & Finance"
    harvested_datasets: dict = field(default_factory=lambda: {
        kind: f"harvested-{kind}-record" for kind in OLD_HARVEST_TYPES})
    # a site file that is not an organogram (must keep its URL)
    non_organogram_file_url: str = (OLD_FILES_BASE_URL
                                    + "spend/cabinet-office-spend-2017-09.csv")
    # publishers
    null_extra_publisher: str = "cabinet-office"
    null_extra_publisher_key: str = "foi-phone"
    # resource_group whose dataset is gone: resource_group.package_id is
    # NULL (the foreign key to package forbids a dangling id); it has
    # resources, and all of them have resource_revision rows.
    orphan_resource_group_id: str = special_id("orphan-resource-group")
    duplicate_harvest_source_id: str = DUPLICATE_HARVEST_SOURCE_ID
    harvest_source_types: tuple = OLD_HARVEST_TYPES
    dkan_source_url: str = "https://data.anytown.gov.uk"

    @property
    def sysadmins(self) -> tuple:
        return self.sysadmins_with_membership + self.sysadmins_without_membership


KNOWN_CASES = KNOWN = KnownCases()

# ---------------------------------------------------------------------------
# Schema

_MIGRATE_VERSION_DDL = """
CREATE TABLE migrate_version (
    repository_id character varying(250) NOT NULL,
    repository_path text,
    version integer,
    CONSTRAINT migrate_version_pkey PRIMARY KEY (repository_id)
);
"""

# ckanext-dgu's own tables.
_DGU_DDL = """
CREATE TABLE data_cache (
    id text NOT NULL PRIMARY KEY,
    object_id text,
    key text NOT NULL,
    value text,
    created timestamp without time zone
);
CREATE INDEX idx_data_cache_object_id ON data_cache (object_id);
CREATE TABLE publisher_request (
    id text NOT NULL PRIMARY KEY,
    user_name text NOT NULL,
    group_name text NOT NULL,
    reason text,
    date_of_request timestamp without time zone,
    date_of_decision timestamp without time zone,
    decision boolean,
    login_token text
);
CREATE TABLE schema (
    id text NOT NULL PRIMARY KEY,
    url text NOT NULL,
    title text NOT NULL
);
CREATE TABLE codelist (
    id text NOT NULL PRIMARY KEY,
    url text NOT NULL,
    title text NOT NULL
);
CREATE TABLE commitment (
    id text NOT NULL PRIMARY KEY,
    source text NOT NULL,
    commitment_text text NOT NULL,
    notes text NOT NULL,
    dataset text NOT NULL,
    publisher text NOT NULL,
    author text,
    dataset_name text,
    created timestamp without time zone,
    state text NOT NULL
);
CREATE INDEX idx_commitment_source ON commitment (source);
CREATE INDEX idx_commitment_publisher ON commitment (publisher);
"""

# ckanext-harvest as the DGU branch had it (publisher_id, frequency,
# next_run on the source; coupled resources for INSPIRE services).
_HARVEST_DDL = """
CREATE TABLE harvest_source (
    id text NOT NULL PRIMARY KEY,
    name text,
    url text NOT NULL,
    title text,
    description text,
    config text,
    created timestamp without time zone,
    type text NOT NULL,
    active boolean,
    user_id text,
    publisher_id text,
    frequency text,
    next_run timestamp without time zone
);
CREATE TABLE harvest_job (
    id text NOT NULL PRIMARY KEY,
    created timestamp without time zone,
    gather_started timestamp without time zone,
    gather_finished timestamp without time zone,
    finished timestamp without time zone,
    source_id text REFERENCES harvest_source (id),
    status text NOT NULL
);
CREATE TABLE harvest_object (
    id text NOT NULL PRIMARY KEY,
    guid text,
    current boolean,
    gathered timestamp without time zone,
    fetch_started timestamp without time zone,
    content text,
    fetch_finished timestamp without time zone,
    import_started timestamp without time zone,
    import_finished timestamp without time zone,
    state text,
    metadata_modified_date timestamp without time zone,
    retry_times integer,
    harvest_job_id text REFERENCES harvest_job (id),
    harvest_source_id text REFERENCES harvest_source (id),
    package_id text REFERENCES package (id) DEFERRABLE,
    report_status text
);
CREATE INDEX harvest_object_guid_idx ON harvest_object (guid);
CREATE INDEX harvest_object_package_id_idx ON harvest_object (package_id);
CREATE TABLE harvest_object_extra (
    id text NOT NULL PRIMARY KEY,
    harvest_object_id text REFERENCES harvest_object (id),
    key text,
    value text
);
CREATE TABLE harvest_gather_error (
    id text NOT NULL PRIMARY KEY,
    harvest_job_id text REFERENCES harvest_job (id),
    message text,
    created timestamp without time zone
);
CREATE TABLE harvest_object_error (
    id text NOT NULL PRIMARY KEY,
    harvest_object_id text REFERENCES harvest_object (id),
    message text,
    stage text,
    line integer,
    created timestamp without time zone
);
CREATE TABLE harvest_coupled_resource (
    id text NOT NULL PRIMARY KEY,
    service_record_package_id text REFERENCES package (id),
    harvest_source_reference text NOT NULL,
    dataset_record_package_id text REFERENCES package (id)
);
"""


def _engine(url):
    return create_engine(db.parse(url), poolclass=NullPool)


def build_schema(url, harvest: bool = True, progress: Progress = None,
                 version: int = LEGACY_VERSION) -> None:
    """Create the schema of a legacy CKAN at sqlalchemy-migrate ``version``
    (as CKAN's own migrations build it), ``migrate_version`` = ``version``,
    the DGU tables, the old harvest tables (unless ``harvest=False``) and
    the continuity indexes the version lacks, in one transaction, in the
    empty database of ``url``."""
    _check_version(version)
    started = time.monotonic()
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            alembic_runner.upgrade(connection,
                                   alembic_runner.legacy_revision(version))
            connection.exec_driver_sql("DROP TABLE alembic_version")
            connection.exec_driver_sql(_MIGRATE_VERSION_DDL)
            connection.execute(
                text("INSERT INTO migrate_version VALUES (:id, :path, :version)"),
                {"id": MIGRATE_REPOSITORY_ID, "path": MIGRATE_REPOSITORY_PATH,
                 "version": version})
            connection.exec_driver_sql(_DGU_DDL)
            if harvest:
                connection.exec_driver_sql(_HARVEST_DDL)
            for index, table in CONTINUITY_INDEXES.items():
                if traps.INDEXES_CREATED_BY_UPGRADE[index] > version:
                    connection.exec_driver_sql(
                        f"CREATE INDEX {index} ON {table} (continuity_id)")
    except Exception as error:
        raise OperatorError(
            f"cannot build the old schema in {db.safe_url(url)}: "
            f"{db.first_line(getattr(error, 'orig', None) or error)}") from error
    finally:
        engine.dispose()
    _say(progress, f"schema: legacy CKAN (migrate_version {version}), DGU"
         f"{' and harvest' if harvest else ''} tables "
         f"({time.monotonic() - started:.1f}s)")


def _check_version(version: int) -> None:
    if not LEGACY_VERSION <= version <= alembic_runner.LAST_LEGACY_VERSION:
        raise OperatorError(
            f"--legacy-version must be from {LEGACY_VERSION} (CKAN 2.2) to "
            f"{alembic_runner.LAST_LEGACY_VERSION} (got {version})")


# Tables and columns the generator fills that exist only from, or only
# before, a legacy version: (table, column or None for the whole table) ->
# (first version that has it, first version that no longer has it).
SCHEMA_CHANGES = {
    ("resource_view", None): (72, None),
    ("resource", "package_id"): (74, None),
    ("resource_revision", "package_id"): (74, None),
    ("resource", "resource_group_id"): (None, 74),
    ("resource_revision", "resource_group_id"): (None, 74),
    ("resource_group", None): (None, 74),
    ("resource_group_revision", None): (None, 74),
    ("user_object_role", None): (None, 78),
    ("package_role", None): (None, 78),
    ("group_role", None): (None, 78),
    ("system_role", None): (None, 78),
    ("authorization_group_role", None): (None, 78),
    # 083 drops them when empty, as they are on a schema built from nothing.
    ("related", None): (None, 83),
    ("related_dataset", None): (None, 83),
    ("package", "metadata_created"): (84, None),
    ("package_revision", "metadata_created"): (84, None),
    ("user", "openid"): (None, 86),
}


def in_schema(version: int, table: str, column: Optional[str] = None) -> bool:
    """Whether the legacy schema at ``version`` has ``table`` (and
    ``column`` of it), as far as the generator's tables go."""
    for key in ((table, None), (table, column)):
        first, gone = SCHEMA_CHANGES.get(key, (None, None))
        if (first is not None and version < first) or \
                (gone is not None and version >= gone):
            return False
    return True


# ---------------------------------------------------------------------------
# Bulk loading

def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


def _needs_escape(value: str) -> bool:
    return "\\" in value or "\t" in value or "\n" in value or "\r" in value


def _field(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        if _needs_escape(value):
            return (value.replace("\\", "\\\\").replace("\t", "\\t")
                    .replace("\n", "\\n").replace("\r", "\\r"))
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


_VDM_COLUMNS = ("continuity_id", "expired_id", "revision_timestamp",
                "expired_timestamp", "current")

# Tables in an order that satisfies every foreign key: a parent's rows are
# always copied before its children's.
COLUMNS = {
    "revision": ("id", "timestamp", "author", "message", "state",
                 "approved_timestamp"),
    "user": ("id", "name", "apikey", "created", "about", "openid", "password",
             "fullname", "email", "reset_key", "sysadmin",
             "activity_streams_email_notifications", "state"),
    "group": ("id", "name", "title", "description", "created", "state",
              "revision_id", "type", "approval_status", "image_url",
              "is_organization"),
    "group_revision": (),
    "group_extra": ("id", "group_id", "key", "value", "state", "revision_id"),
    "group_extra_revision": (),
    "member": ("id", "group_id", "table_id", "state", "revision_id",
               "table_name", "capacity"),
    "member_revision": (),
    "tag": ("id", "name", "vocabulary_id"),
    "package": ("id", "name", "title", "version", "url", "notes", "author",
                "author_email", "maintainer", "maintainer_email",
                "revision_id", "state", "license_id", "type", "owner_org",
                "private", "metadata_modified", "creator_user_id",
                "metadata_created"),
    "package_revision": (),
    "package_extra": ("id", "key", "value", "revision_id", "state",
                      "package_id"),
    "package_extra_revision": (),
    "package_tag": ("id", "revision_id", "state", "package_id", "tag_id"),
    "package_tag_revision": (),
    "resource_group": ("id", "package_id", "label", "sort_order", "extras",
                       "state", "revision_id"),
    "resource_group_revision": (),
    "resource": ("id", "url", "format", "description", "position",
                 "revision_id", "hash", "state", "resource_group_id",
                 "extras", "name", "resource_type", "mimetype",
                 "mimetype_inner", "size", "last_modified", "cache_url",
                 "cache_last_updated", "webstore_url",
                 "webstore_last_updated", "created", "url_type",
                 "package_id"),
    "resource_revision": (),
    "resource_view": ("id", "resource_id", "title", "description",
                      "view_type", "order", "config"),
    "package_relationship": ("id", "subject_package_id", "object_package_id",
                             "type", "comment", "revision_id", "state"),
    "package_relationship_revision": (),
    "authorization_group": ("id", "name", "created"),
    "authorization_group_user": ("authorization_group_id", "user_id", "id"),
    "user_object_role": ("id", "user_id", "context", "role",
                         "authorized_group_id"),
    "package_role": ("user_object_role_id", "package_id"),
    "group_role": ("user_object_role_id", "group_id"),
    "system_role": ("user_object_role_id",),
    "authorization_group_role": ("user_object_role_id",
                                 "authorization_group_id"),
    "rating": ("id", "user_id", "user_ip_address", "rating", "created",
               "package_id"),
    "dashboard": ("user_id", "activity_stream_last_viewed", "email_last_sent"),
    "user_following_user": ("follower_id", "object_id", "datetime"),
    "user_following_dataset": ("follower_id", "object_id", "datetime"),
    "user_following_group": ("follower_id", "object_id", "datetime"),
    "activity": ("id", "timestamp", "user_id", "object_id", "revision_id",
                 "activity_type", "data"),
    "activity_detail": ("id", "activity_id", "object_id", "object_type",
                        "activity_type", "data"),
    "related": ("id", "type", "title", "description", "image_url", "url",
                "created", "owner_id", "view_count", "featured"),
    "related_dataset": ("id", "dataset_id", "related_id", "status"),
    "system_info": ("id", "key", "value", "revision_id"),
    "system_info_revision": ("id", "key", "value", "revision_id",
                             "continuity_id"),
    "task_status": ("id", "entity_id", "entity_type", "task_type", "key",
                    "value", "state", "error", "last_updated"),
    "tracking_summary": ("url", "package_id", "tracking_type", "count",
                         "running_total", "recent_views", "tracking_date"),
    "data_cache": ("id", "object_id", "key", "value", "created"),
    "publisher_request": ("id", "user_name", "group_name", "reason",
                          "date_of_request", "date_of_decision", "decision",
                          "login_token"),
    "schema": ("id", "url", "title"),
    "codelist": ("id", "url", "title"),
    "commitment": ("id", "source", "commitment_text", "notes", "dataset",
                   "publisher", "author", "dataset_name", "created", "state"),
    "harvest_source": ("id", "name", "url", "title", "description", "config",
                       "created", "type", "active", "user_id", "publisher_id",
                       "frequency", "next_run"),
    "harvest_job": ("id", "created", "gather_started", "gather_finished",
                    "finished", "source_id", "status"),
    "harvest_gather_error": ("id", "harvest_job_id", "message", "created"),
    "harvest_object": ("id", "guid", "current", "gathered", "fetch_started",
                       "content", "fetch_finished", "import_started",
                       "import_finished", "state", "metadata_modified_date",
                       "retry_times", "harvest_job_id", "harvest_source_id",
                       "package_id", "report_status"),
    "harvest_object_extra": ("id", "harvest_object_id", "key", "value"),
    "harvest_object_error": ("id", "harvest_object_id", "message", "stage",
                             "line", "created"),
    "harvest_coupled_resource": ("id", "service_record_package_id",
                                 "harvest_source_reference",
                                 "dataset_record_package_id"),
}
for _table in list(COLUMNS):
    if _table.endswith("_revision") and not COLUMNS[_table]:
        COLUMNS[_table] = COLUMNS[_table[:-len("_revision")]] + _VDM_COLUMNS
del _table


class _Loader:
    """Rows buffered per table as COPY text, copied in foreign-key order.
    Callers flush only between whole units (a dataset with all its rows),
    so no child is ever copied before its parent.  Rows are given with
    every column of ``COLUMNS``; only the tables and columns the legacy
    schema at ``version`` has are copied (``SCHEMA_CHANGES``)."""

    flush_rows = 100_000

    def __init__(self, cursor, progress: Progress,
                 version: int = LEGACY_VERSION):
        self.cursor = cursor
        self.progress = progress
        self.columns = {
            table: [c for c in columns if in_schema(version, table, c)]
            for table, columns in COLUMNS.items()
            if in_schema(version, table)}
        # Positions of the copied columns where some are left out.
        self.kept = {
            table: [COLUMNS[table].index(c) for c in columns]
            for table, columns in self.columns.items()
            if len(columns) < len(COLUMNS[table])}
        self.buffers = {table: [] for table in self.columns}
        self.counts = {table: 0 for table in COLUMNS}
        self.seconds = {table: 0.0 for table in COLUMNS}
        self.pending = 0

    def has(self, table: str) -> bool:
        return table in self.columns

    def add(self, table: str, *values) -> None:
        if table not in self.buffers:
            return
        kept = self.kept.get(table)
        if kept is not None:
            values = [values[index] for index in kept]
        self.buffers[table].append("\t".join([_field(v) for v in values]))
        self.pending += 1

    def maybe_flush(self) -> None:
        if self.pending >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        for table, rows in self.buffers.items():
            if not rows:
                continue
            started = time.monotonic()
            buffer = io.StringIO("\n".join(rows) + "\n")
            columns = ", ".join(f'"{c}"' for c in self.columns[table])
            self.cursor.copy_expert(
                f'COPY "{table}" ({columns}) FROM STDIN', buffer)
            self.counts[table] += len(rows)
            self.seconds[table] += time.monotonic() - started
            rows.clear()
        self.pending = 0


# ---------------------------------------------------------------------------
# Data

_FIRST = ("Alice", "Bob", "Carol", "David", "Emma", "Fiona", "George", "Hannah",
          "Ian", "Julia", "Kevin", "Laura", "Mohammed", "Nina", "Oliver",
          "Priya", "Rhys", "Sarah", "Tom", "Wei", "Zoë", "Siân", "Ewan")
_LAST = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans",
         "Khan", "Patel", "O'Neill", "Davies", "Thomas", "MacLeod", "Hughes",
         "Clarke", "Roberts", "Walker", "Wright", "Green", "Hall")
_PLACES = ("Anytown", "Barchester", "Casterbridge", "Dunmore", "Eastwick",
           "Fairhaven", "Glenbrook", "Hartfield", "Ivybridge", "Kingsbury",
           "Lowmoor", "Midhurst", "Northam", "Oakham", "Porthaven", "Redcliff",
           "Southby", "Thornbury", "Upwood", "Westerham")
_BODIES = ("Council", "District Council", "Borough Council", "NHS Trust",
           "Clinical Commissioning Group", "Police", "Fire and Rescue Service",
           "Agency", "Authority", "Commission")
_DEPARTMENTS = ("Cabinet Office", "Department for Transport",
                "Department for Education", "Department of Health",
                "Home Office", "Ministry of Defence", "HM Treasury",
                "Department for Environment, Food & Rural Affairs",
                "Department for Communities and Local Government",
                "Ministry of Justice", "Department for Work and Pensions",
                "Foreign and Commonwealth Office")
_CATEGORIES = ("ministerial-department", "non-ministerial-department",
               "executive-ndpb", "advisory-ndpb", "local-council", "nhs",
               "police", "charity-ngo", "public-corporation", "devolved")
_SUBJECTS = ("Spend over £25,000", "Road traffic counts", "School census",
             "Air quality monitoring", "Hospital waiting times",
             "Crime statistics", "Planning applications", "Bus stops",
             "Flood risk areas", "Land registry price paid",
             "Recycling rates", "Public toilets", "Car parks",
             "Payroll costs", "Contracts register", "Grants awarded",
             "Energy consumption", "Library visits", "Food hygiene ratings",
             "Population estimates")
_FORMATS = (("CSV", "text/csv"), ("XLS", "application/vnd.ms-excel"),
            ("PDF", "application/pdf"), ("HTML", "text/html"),
            ("JSON", "application/json"), ("XML", "application/xml"),
            ("WMS", None), ("ZIP", "application/zip"))
_FREQUENCIES = ("annual", "quarterly", "monthly", "weekly", "daily", "never",
                "discontinued")
_TAGS = ("transport", "roads", "spending", "finance", "health", "nhs",
         "education", "schools", "crime", "police", "environment", "air",
         "water", "planning", "housing", "population", "census", "energy",
         "waste", "maps", "boundaries", "employment", "benefits", "economy")
_TITLES = list(THEME_SLUGS) + [KNOWN.unmapped_theme]
_EDITED_EXTRAS = ("temporal_coverage-to", "metadata-date", "update_frequency")


def _slug(value: str) -> str:
    out = []
    for char in value.lower():
        if char.isascii() and char.isalnum():
            out.append(char)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


@dataclass
class _User:
    id: str
    name: str
    created: dt.datetime
    publishing: bool = False


@dataclass
class _Publisher:
    id: str
    name: str
    title: str
    created: dt.datetime
    local: bool  # a council, NHS body, police...: local organograms


@dataclass
class _Dataset:
    id: str
    name: str
    title: str
    publisher: _Publisher
    history: list      # [(revision id, timestamp, state)], oldest first
    deleted: bool
    creator_id: str


@dataclass
class _Shape:
    special: Optional[str]
    harvested: Optional[str] = None   # the old harvest source type
    guid: Optional[str] = None
    organogram: Optional[str] = None  # the organogram schema id
    extras: dict = field(default_factory=dict)


def _harvest_extras(guid: str, publisher: _Publisher,
                    created: dt.datetime) -> dict:
    """The extras of a harvested (UKLP/INSPIRE) record."""
    return {
        "UKLP": "True", "guid": guid,
        "spatial": '{"type": "Polygon", "coordinates": [[[-6.4, '
                   '49.8], [1.8, 49.8], [1.8, 60.9], [-6.4, 60.9], '
                   '[-6.4, 49.8]]]}',
        "bbox-north-lat": "60.9", "bbox-south-lat": "49.8",
        "bbox-east-long": "1.8", "bbox-west-long": "-6.4",
        "metadata-date": created.date().isoformat(),
        "responsible-party": f"{publisher.title} (pointOfContact)",
        "import_source": "harvest",
    }


class _Generator:
    def __init__(self, loader: _Loader, datasets: int, seed: int,
                 harvest: bool, progress: Progress):
        self.load = loader
        self.rng = random.Random(seed)
        self.datasets = datasets
        self.harvest = harvest
        self.progress = progress
        self.start = dt.datetime(2010, 1, 4, 9, 0, 0)
        self.span_seconds = int((dt.datetime(2018, 5, 31) - self.start)
                                .total_seconds())
        self.users: list[_User] = []
        self.by_name: dict[str, _User] = {}
        self.publishers: list[_Publisher] = []
        self.packages: list[tuple[str, str, dt.datetime]] = []  # id, name, t
        self.tag_ids: dict[str, str] = {}
        self.harvest_jobs: dict[str, list[str]] = {}  # source id -> job ids
        self.sources_by_type: dict[str, str] = {}
        self.sequence = 0

    # -- helpers ----------------------------------------------------------
    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def when(self) -> dt.datetime:
        return self.start + dt.timedelta(
            seconds=self.rng.randrange(self.span_seconds))

    def later(self, moment: dt.datetime, max_days: int = 400) -> dt.datetime:
        return moment + dt.timedelta(seconds=self.rng.randrange(
            60, max_days * 86400))

    def revision(self, moment: dt.datetime, author: str, message: str) -> str:
        revision_id = self.uuid()
        self.load.add("revision", revision_id, moment, author, message,
                      "active", None)
        return revision_id

    def versioned(self, table: str, values: dict, history) -> None:
        """The row of a vdm-versioned table and one ``*_revision`` row per
        version: ``history`` is [(revision_id, timestamp, state)], oldest
        first; the base row is the last version."""
        columns = COLUMNS[table]
        for index, (revision_id, moment, state) in enumerate(history):
            last = index == len(history) - 1
            row = dict(values, revision_id=revision_id, state=state)
            expired = FAR_FUTURE if last else history[index + 1][1]
            self.load.add(f"{table}_revision",
                          *[row[c] for c in columns],
                          values["id"], None, moment, expired, last)
        revision_id, _, state = history[-1]
        row = dict(values, revision_id=revision_id, state=state)
        self.load.add(table, *[row[c] for c in columns])

    def history(self, created: dt.datetime, author: str, what: str,
                final_state: str = "active", updates: int = 0):
        versions = [(self.revision(created, author, f"Created {what}"),
                     created, "active" if updates or final_state == "active"
                     else final_state)]
        moment = created
        for number in range(updates):
            moment = self.later(moment, 200)
            last = number == updates - 1
            versions.append((self.revision(moment, author, f"Updated {what}"),
                             moment, final_state if last else "active"))
        return versions

    def activity(self, moment, user_id, object_id, revision_id, kind,
                 object_type, detail_kind, data) -> None:
        activity_id = self.uuid()
        payload = json.dumps(data, sort_keys=True)
        self.load.add("activity", activity_id, moment, user_id, object_id,
                      revision_id, kind, payload)
        self.load.add("activity_detail", self.uuid(), activity_id, object_id,
                      object_type, detail_kind, payload)

    def person(self) -> str:
        return f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"

    # -- users ------------------------------------------------------------
    def add_user(self, name: str, fullname, email=None, sysadmin=False,
                 state="active", publishing=False, openid=None) -> _User:
        created = self.when()
        user = _User(self.uuid(), name, created, publishing)
        if email is None and fullname:
            email = f"{_slug(fullname) or name}.{len(self.users)}@example.gov.uk"
        self.load.add("user", user.id, name, self.uuid(), created,
                      None if self.rng.random() < 0.8 else "Works on open data.",
                      openid, "$pbkdf2-sha512$" + self.uuid().replace("-", ""),
                      fullname, email, None, sysadmin, False, state)
        self.users.append(user)
        self.by_name[name] = user
        return user

    def build_users(self) -> None:
        known = KNOWN
        for pseudo in known.pseudo_users:
            self.add_user(pseudo, None, email=None)
        self.add_user(known.site_user, None, sysadmin=True)
        self.add_user("dgu_support", "DGU Support", "support@data.gov.uk",
                      sysadmin=True, publishing=True)
        self.add_user("harvest", "Harvest", "harvest@data.gov.uk", sysadmin=True)
        self.add_user("user_d101", "Ross Jones", "ross.jones@example.gov.uk",
                      sysadmin=True)
        for name in known.same_fullname_users:
            self.add_user(name, known.same_fullname, publishing=True)
        for name, fullname in known.invalid_fullnames.items():
            self.add_user(name, fullname,
                          email=f"{name}@example.gov.uk", publishing=True)
        self.add_user(known.non_publishing_user_d, "Peter Parker")
        for name in (known.publishing_admin, known.publishing_editor,
                     known.deleted_membership_only,
                     known.active_and_deleted_memberships):
            self.add_user(name, self.person(), publishing=True)
        for name in known.non_publishing_with_history:
            self.add_user(name, self.person())
        deleted, kept = known.email_case_clash_deleted_vs_kept
        self.add_user(deleted, "Jane Doe", "Jane.Doe@example.gov.uk")
        self.add_user(kept, "Jane Doe", "jane.doe@example.gov.uk",
                      publishing=True)
        first, second = known.email_case_clash_kept_pair
        self.add_user(first, "Bob Jones", "Bob.Jones@anytown.gov.uk",
                      publishing=True)
        self.add_user(second, "Robert Jones", "bob.jones@ANYTOWN.gov.uk",
                      publishing=True)
        self.special_users = len(self.users)

        wanted = max(self.datasets // 5, self.special_users + 10)
        uid = 5000
        while len(self.users) < wanted:
            uid += self.rng.randint(1, 40)
            fullname = self.person()
            roll = self.rng.random()
            if roll < 0.75:
                name, openid = f"user_d{uid}", None
            elif roll < 0.9:
                name, openid = f"{_slug(fullname)}-{uid}", None
            else:
                name = f"openid-{uid}"
                openid = f"https://openid.example.org/{uid}"
            state = "deleted" if self.rng.random() < 0.03 else "active"
            self.add_user(name, fullname, openid=openid, state=state,
                          publishing=self.rng.random() < 0.3)
        self.load.maybe_flush()

    # -- publishers -------------------------------------------------------
    def build_publishers(self) -> None:
        count = max(self.datasets // 15, 8)
        support = self.by_name["dgu_support"]
        # A few departments at the top; the other publishers mostly hang
        # below an earlier one.
        top = min(len(_DEPARTMENTS), max(2, count // 5))
        titles = []
        for index in range(count):
            if index < top:
                titles.append((_DEPARTMENTS[index], "ministerial-department"))
            else:
                place = _PLACES[index % len(_PLACES)]
                body = _BODIES[(index // len(_PLACES)) % len(_BODIES)]
                suffix = index // (len(_PLACES) * len(_BODIES))
                title = f"{place} {body}" + (f" {suffix + 1}" if suffix else "")
                titles.append((title, self.rng.choice(_CATEGORIES[1:])))
        for index, (title, category) in enumerate(titles):
            name = _slug(title)
            created = self.when()
            publisher = _Publisher(self.uuid(), name, title, created,
                                   local=index >= top)
            self.publishers.append(publisher)
            closed = self.rng.random() < 0.05
            history = self.history(created, support.name,
                                   f"publisher {name}",
                                   updates=self.rng.randint(0, 2))
            self.versioned("group", {
                "id": publisher.id, "name": name, "title": title,
                "description": f"{title} publishes data on data.gov.uk.",
                "created": created, "type": "organization",
                "approval_status": "approved", "image_url": None,
                "is_organization": True}, history)
            contact = self.person()
            extras = {
                "contact-name": contact,
                "contact-email": f"data@{name}.gov.uk",
                "contact-phone": f"020 7{self.rng.randint(100, 999)} "
                                 f"{self.rng.randint(1000, 9999)}",
                "foi-name": "FOI team",
                "foi-email": f"foi@{name}.gov.uk",
                "foi-phone": f"0300 {self.rng.randint(100, 999)} "
                             f"{self.rng.randint(1000, 9999)}",
                "foi-web": f"https://www.{name}.gov.uk/foi",
                "category": category,
                "abbreviation": "".join(w[0] for w in title.split()
                                        if w[0].isupper()),
                "closed": "true" if closed else "false",
            }
            if closed and index:
                extras["replaced_by"] = self.publishers[
                    self.rng.randrange(index)].name
            if name == KNOWN.null_extra_publisher:
                extras[KNOWN.null_extra_publisher_key] = None
            for key, value in extras.items():
                self.versioned("group_extra", {
                    "id": self.uuid(), "group_id": publisher.id, "key": key,
                    "value": value}, history[:1])
            if index == top or (index > top and self.rng.random() < 0.8):
                parent = self.publishers[self.rng.randrange(
                    min(index, top + index // 3))]
                self.member(publisher.id, parent.id, "group", "parent",
                            history[:1])
            self.activity(created, support.id, publisher.id, history[0][0],
                          "new organization", "Group", "new",
                          {"group": {"id": publisher.id, "name": name,
                                     "title": title}})
        self.load.maybe_flush()

    def member(self, group_id, table_id, table_name, capacity, history):
        self.versioned("member", {
            "id": self.uuid(), "group_id": group_id, "table_id": table_id,
            "table_name": table_name, "capacity": capacity}, history)

    def membership(self, user: _User, publisher: _Publisher, capacity: str,
                   state: str = "active") -> None:
        moment = max(user.created, publisher.created)
        history = self.history(self.later(moment, 30), "dgu_support",
                               f"membership of {user.name}",
                               final_state=state,
                               updates=1 if state != "active" else 0)
        self.member(publisher.id, user.id, "user", capacity, history)

    def build_memberships(self) -> None:
        known = KNOWN
        first = self.publishers[0]
        self.membership(self.by_name["dgu_support"], first, "admin")
        for name in known.same_fullname_users + tuple(known.invalid_fullnames):
            self.membership(self.by_name[name], first, "editor")
        self.membership(self.by_name[known.publishing_admin],
                        self.publishers[1], "admin")
        self.membership(self.by_name[known.publishing_editor],
                        self.publishers[1], "editor")
        self.membership(self.by_name[known.deleted_membership_only],
                        self.publishers[2], "editor", state="deleted")
        both = self.by_name[known.active_and_deleted_memberships]
        self.membership(both, self.publishers[2], "admin", state="deleted")
        self.membership(both, self.publishers[3], "admin")
        for name in (known.email_case_clash_deleted_vs_kept[1],
                     *known.email_case_clash_kept_pair):
            self.membership(self.by_name[name], self.publishers[4], "editor")
        for user in self.users[self.special_users:]:
            if not user.publishing:
                continue
            for _ in range(1 if self.rng.random() < 0.8 else 2):
                self.membership(
                    user, self.rng.choice(self.publishers),
                    "admin" if self.rng.random() < 0.3 else "editor",
                    state="deleted" if self.rng.random() < 0.08 else "active")
        self.load.maybe_flush()

    # -- harvest sources --------------------------------------------------
    def build_harvest_sources(self) -> None:
        harvest_user = self.by_name["harvest"]
        count = max(len(OLD_HARVEST_TYPES), self.datasets // 400)
        sources = []
        for index in range(count):
            kind = OLD_HARVEST_TYPES[index % len(OLD_HARVEST_TYPES)]
            publisher = self.publishers[(index * 7 + 3) % len(self.publishers)]
            url = {
                "gemini-single": f"https://{publisher.name}.gov.uk/metadata/record-{index}.xml",
                "gemini-csw": f"https://csw.{publisher.name}.gov.uk/geonetwork/srv/en/csw",
                "gemini-waf": f"https://{publisher.name}.gov.uk/inspire/waf/",
                "data_json": f"https://{publisher.name}.gov.uk/data.json",
                "dkan": (KNOWN.dkan_source_url if index == OLD_HARVEST_TYPES.index("dkan")
                         else f"https://data.{publisher.name}.gov.uk"),
                "ckan": f"https://ckan.{publisher.name}.gov.uk",
            }[kind]
            sources.append((self.uuid(), f"{publisher.name}-{kind}-{index}",
                            url, kind, publisher))
        # The duplicate: a second registration of the first WAF source.
        waf = sources[OLD_HARVEST_TYPES.index("gemini-waf")]
        sources.append((DUPLICATE_HARVEST_SOURCE_ID, f"{waf[1]}-duplicate",
                        waf[2], "gemini-waf", waf[4]))
        for source_id, name, url, kind, publisher in sources:
            created = self.when()
            self.load.add("harvest_source", source_id, name, url,
                          f"{publisher.title} ({kind})",
                          f"Harvests {kind} records of {publisher.title}.",
                          json.dumps({"default_extras": {"harvest": "yes"}})
                          if kind == "ckan" else "", created, kind,
                          self.rng.random() < 0.9, harvest_user.id,
                          publisher.id,
                          self.rng.choice(("MANUAL", "WEEKLY", "DAILY")),
                          self.later(created, 30))
            self.sources_by_type.setdefault(kind, source_id)
            jobs = []
            moment = created
            for number in range(self.rng.randint(1, 3)):
                moment = self.later(moment, 60)
                job_id = self.uuid()
                jobs.append(job_id)
                self.load.add("harvest_job", job_id, moment, moment,
                              moment + dt.timedelta(minutes=3),
                              moment + dt.timedelta(minutes=20), source_id,
                              "Finished")
                if number == 0 or self.rng.random() < 0.2:
                    self.load.add("harvest_gather_error", self.uuid(), job_id,
                                  f"Unable to get content for URL: {url}: "
                                  "HTTP Error 503", moment)
            self.harvest_jobs[source_id] = jobs
        self.load.maybe_flush()

    def harvest_object(self, source_id: str, package_id, guid: str,
                       moment: dt.datetime, current: bool) -> None:
        object_id = self.uuid()
        self.load.add("harvest_object", object_id, guid, current, moment,
                      moment, f"<gmd:MD_Metadata><gmd:fileIdentifier>{guid}"
                      "</gmd:fileIdentifier></gmd:MD_Metadata>",
                      moment, moment, moment,
                      "COMPLETE" if current else "ERROR", moment, 0,
                      self.rng.choice(self.harvest_jobs[source_id]),
                      source_id, package_id, "added" if current else "errored")
        self.load.add("harvest_object_extra", self.uuid(), object_id,
                      "status", "new" if current else "change")
        if not current or self.rng.random() < 0.1:
            self.load.add("harvest_object_error", self.uuid(), object_id,
                          "Validation error: gmd:MD_Metadata missing "
                          "gmd:dateStamp", "Import", self.rng.randint(1, 400),
                          moment)
        return object_id

    # -- datasets ---------------------------------------------------------
    def build_tags(self) -> None:
        count = max(len(_TAGS), self.datasets // 2)
        for index in range(count):
            base = _TAGS[index % len(_TAGS)]
            name = base if index < len(_TAGS) else f"{base}-{index}"
            tag_id = self.uuid()
            self.tag_ids[name] = tag_id
            self.load.add("tag", tag_id, name, None)
        self.tag_names = list(self.tag_ids)

    def build_datasets(self) -> None:
        known = KNOWN
        specials = {
            0: known.organogram_central_dataset,
            1: known.organogram_local_dataset,
            2: known.schema_dataset,
            3: known.resource_lists_dataset,
            4: known.null_extra_dataset,
            5: known.deleted_dataset,
            6: known.deleted_resource_dataset,
        }
        for offset, kind in enumerate(OLD_HARVEST_TYPES):
            specials[7 + offset] = known.harvested_datasets[kind]
        started = time.monotonic()
        report_every = max(self.datasets // 10, 1000)
        for index in range(self.datasets):
            self.dataset(index, specials.get(index))
            self.load.maybe_flush()
            if (index + 1) % report_every == 0:
                _say(self.progress, f"datasets: {index + 1}/{self.datasets} "
                     f"({time.monotonic() - started:.1f}s)")

    def dataset(self, index: int, special: Optional[str]) -> None:
        rng = self.rng
        # Cabinet Office publishes central organograms; the last publisher
        # is always a local body.
        publisher = (self.publishers[0] if index in (0, 2)
                     else self.publishers[-1] if index == 1
                     else rng.choice(self.publishers))
        creator = rng.choice(self.users[3:])
        subject = _SUBJECTS[index % len(_SUBJECTS)]
        title = special.replace("-", " ").capitalize() if special \
            else f"{subject} - {publisher.title}"
        name = special or (f"{_slug(subject)}-{publisher.name}"[:90]
                           + f"-{index}")
        package_id = self.uuid()
        created = self.when()
        deleted = special == KNOWN.deleted_dataset or (
            special is None and rng.random() < 0.03)
        history = self.history(created, creator.name, f"dataset {name}",
                               final_state="deleted" if deleted else "active",
                               updates=rng.choice((0, 1, 1, 2)))
        contact = self.person()
        self.versioned("package", {
            "id": package_id, "name": name, "title": title, "version": None,
            "url": f"https://www.{publisher.name}.gov.uk/data/{index}",
            "notes": f"{title}.\n\nPublished by {publisher.title}.\tUpdated "
                     "regularly.",
            "author": None, "author_email": None, "maintainer": None,
            "maintainer_email": None, "license_id": "uk-ogl",
            "type": "dataset", "owner_org": publisher.id, "private": False,
            "metadata_modified": history[-1][1],
            "creator_user_id": creator.id, "metadata_created": created},
            history)
        self.packages.append((package_id, name, created))
        self.member(publisher.id, package_id, "package", "organization",
                    history[:1])
        shape = self.dataset_shape(index, special, publisher, contact,
                                   created)
        self.dataset_rows(_Dataset(package_id, name, title, publisher,
                                   history, deleted, creator.id), shape)

    def dataset_shape(self, index, special, publisher, contact, created):
        """What a dataset holds besides its package row: its extras, and
        whether it is harvested (and how) or an organogram."""
        rng = self.rng
        shape = _Shape(special)
        if special in KNOWN.harvested_datasets.values():
            shape.harvested = special[len("harvested-"):-len("-record")]
        elif special is None and rng.random() < 0.3:
            shape.harvested = rng.choice(OLD_HARVEST_TYPES)
        shape.extras = self.common_extras(index, publisher, contact)
        if shape.harvested:
            shape.guid = self.uuid()
            shape.extras.update(_harvest_extras(shape.guid, publisher,
                                                created))
        self.special_extras(shape, publisher)
        return shape

    def common_extras(self, index, publisher, contact) -> dict:
        rng = self.rng
        extras = {
            "theme-primary": _TITLES[index % len(_TITLES)],
            "theme-secondary": json.dumps(rng.sample(list(THEME_SLUGS), 2)),
            "update_frequency": rng.choice(_FREQUENCIES),
            "geographic_coverage": "111100: United Kingdom (England, "
                                   "Scotland, Wales, Northern Ireland)",
            "temporal_coverage-from": str(2000 + rng.randrange(15)),
            "temporal_coverage-to": str(2015 + rng.randrange(4)),
        }
        # Optional fields, filled in as often as publishers did.
        for key, value, share in (
                ("contact-name", contact, 0.7),
                ("contact-email", f"data@{publisher.name}.gov.uk", 0.7),
                ("foi-name", "FOI team", 0.4),
                ("foi-email", f"foi@{publisher.name}.gov.uk", 0.4),
                ("mandate", "https://www.legislation.gov.uk/ukpga/2000/36", 0.3),
                ("licence", "", 0.2),
                ("core-dataset", "false", 0.2),
                ("national_statistic", "no", 0.3)):
            if rng.random() < share:
                extras[key] = value
        if rng.random() < 0.3:
            extras["unpublished"] = "false"
        return extras

    def special_extras(self, shape, publisher) -> None:
        """Organogram and schema extras, resource lists and NULL values."""
        rng, special, extras = self.rng, shape.special, shape.extras
        if special == KNOWN.organogram_central_dataset:
            shape.organogram = ORGANOGRAM_SCHEMA_CENTRAL
        elif special == KNOWN.organogram_local_dataset:
            shape.organogram = ORGANOGRAM_SCHEMA_LOCAL
        elif special is None and not shape.harvested and rng.random() < 0.03:
            shape.organogram = (ORGANOGRAM_SCHEMA_LOCAL if publisher.local
                                else ORGANOGRAM_SCHEMA_CENTRAL)
        if shape.organogram:
            extras.update({"import_source": "organograms_v2",
                           "schema": json.dumps([shape.organogram])})
        elif special == KNOWN.schema_dataset or (
                special is None and rng.random() < 0.05):
            extras["schema"] = json.dumps([special_id("spend-schema")])
        if special == KNOWN.resource_lists_dataset or (
                special is None and rng.random() < 0.05):
            for key in ("individual_resources", "additional_resources",
                        "timeseries_resources"):
                extras[key] = json.dumps([{
                    "url": f"https://www.{publisher.name}.gov.uk/{key}.csv",
                    "description": key.replace("_", " "), "format": "CSV"}])
        if special == KNOWN.null_extra_dataset:
            extras[KNOWN.null_extra_key] = None
        elif special is None and rng.random() < 0.01:
            extras["codelist"] = None

    def dataset_rows(self, dataset: "_Dataset", shape: "_Shape") -> None:
        """The rows hanging off a dataset: extras, tags, resources,
        activities and its harvest object."""
        first_revision = dataset.history[:1]
        # Edits of a dataset touched its coverage dates and its files; the
        # other extras keep the version they were created with.
        for key, value in shape.extras.items():
            self.versioned("package_extra", {
                "id": self.uuid(), "key": key, "value": value,
                "package_id": dataset.id},
                dataset.history if key in _EDITED_EXTRAS else first_revision)
        for tag in self.rng.sample(self.tag_names, self.rng.randint(1, 5)):
            self.versioned("package_tag", {
                "id": self.uuid(), "package_id": dataset.id,
                "tag_id": self.tag_ids[tag]}, first_revision)
        self.dataset_resources(dataset, shape)
        self.dataset_activities(dataset)
        if shape.harvested and self.harvest:
            self.harvest_record(dataset, shape)

    def dataset_resources(self, dataset: "_Dataset", shape: "_Shape") -> None:
        first_revision = dataset.history[:1]
        publisher = dataset.publisher.name
        group_id = self.uuid()
        self.versioned("resource_group", {
            "id": group_id, "package_id": dataset.id, "label": "default",
            "sort_order": "", "extras": "{}"}, first_revision)
        files = []   # (url, format, description, state, history)
        if shape.organogram:
            date = "2017-09-30"
            files += [(f"{OLD_FILES_BASE_URL}organogram/{publisher}/{date}/"
                       f"{date}-{kind}.csv", "CSV",
                       f"Organogram ({kind} staff) {date}", "active",
                       first_revision) for kind in ("senior", "junior")]
            # An older upload that was replaced: stays deleted, untouched.
            files.append((f"{OLD_FILES_BASE_URL}organogram/{publisher}/"
                          "2016-03-31/2016-03-31-senior.csv", "CSV",
                          "Organogram (senior staff) 2016-03-31", "deleted",
                          first_revision))
            files.append((f"https://data.gov.uk/organogram/{publisher}",
                          "HTML", "Organogram viewer", "active",
                          first_revision))
        if shape.special == KNOWN.schema_dataset:
            files.append((KNOWN.non_organogram_file_url, "CSV",
                          "Spend over £25,000, September 2017", "active",
                          first_revision))
        if shape.special == KNOWN.deleted_resource_dataset:
            files.append((f"https://www.{publisher}.gov.uk/old.csv", "CSV",
                          "Superseded file", "deleted", first_revision))
        for position, (url, fmt, description, state, history) in \
                enumerate(files):
            self.resource((group_id, dataset.id), position, history, url,
                          fmt, description, state=state)
        self.generic_resources(dataset, group_id, len(files),
                               0 if shape.organogram else None)

    def generic_resources(self, dataset, group_id, position, count) -> None:
        rng = self.rng
        if count is None:
            count = rng.choice((1, 2, 2, 3, 3, 3, 4, 5))
        for _ in range(count):
            fmt, _mime = rng.choice(_FORMATS)
            self.resource(
                (group_id, dataset.id), position, dataset.history,
                f"https://www.{dataset.publisher.name}.gov.uk/data/"
                f"{dataset.name}/{position}.{fmt.lower()}", fmt,
                f"{dataset.title} ({fmt})",
                state="deleted" if rng.random() < 0.03 else "active")
            position += 1

    def dataset_activities(self, dataset: "_Dataset") -> None:
        data = {"package": {"id": dataset.id, "name": dataset.name,
                            "title": dataset.title}}
        first_revision, created, _state = dataset.history[0]
        self.activity(created, dataset.creator_id, dataset.id,
                      first_revision, "new package", "Package", "new", data)
        last_revision, last_moment, _state = dataset.history[-1]
        self.activity(last_moment, dataset.creator_id, dataset.id,
                      last_revision,
                      "deleted package" if dataset.deleted
                      else "changed package", "Package",
                      "deleted" if dataset.deleted else "changed", data)

    def harvest_record(self, dataset: "_Dataset", shape: "_Shape") -> None:
        created = dataset.history[0][1]
        source_id = self.sources_by_type[shape.harvested]
        object_id = self.harvest_object(source_id, dataset.id, shape.guid,
                                        created, True)
        self.versioned("package_extra", {
            "id": self.uuid(), "key": "harvest_object_id",
            "value": object_id, "package_id": dataset.id},
            dataset.history[:1])
        if shape.harvested == "gemini-waf" and (
                shape.special or self.rng.random() < 0.5):
            self.harvest_object(DUPLICATE_HARVEST_SOURCE_ID, dataset.id,
                                shape.guid, self.later(created, 10), False)

    def resource(self, parent, position, history, url, fmt, description,
                 state: str = "active") -> None:
        """A resource of ``parent`` = (resource group id, dataset id): the
        schema has one or the other (legacy 074 replaced the group)."""
        rng = self.rng
        group_id, package_id = parent
        mimetype = dict(_FORMATS).get(fmt)
        created = history[0][1]
        resource_id = self.uuid()
        self.versioned("resource", {
            "id": resource_id, "url": url, "format": fmt,
            "description": description, "position": position, "hash": "",
            "resource_group_id": group_id, "package_id": package_id,
            "extras": json.dumps({"openness_score": str(rng.randint(0, 5))}),
            "name": None, "resource_type": "file" if fmt != "HTML" else None,
            "mimetype": mimetype, "mimetype_inner": None,
            "size": rng.randint(1000, 5_000_000) if fmt != "HTML" else None,
            "last_modified": None, "cache_url": None,
            "cache_last_updated": None, "webstore_url": None,
            "webstore_last_updated": None, "created": created,
            "url_type": None}, history[:-1] + [(history[-1][0], history[-1][1],
                                                state)])
        if fmt == "CSV":
            # From legacy 072 on, CKAN gave a CSV file a preview; its id
            # comes from the resource's, so the random stream is the same
            # at every version.
            self.load.add("resource_view",
                          str(uuid.uuid5(_SPECIAL_NAMESPACE, resource_id)),
                          resource_id, "Data Explorer", "", "recline_view",
                          0, None)

    def orphan_resource_group(self) -> None:
        """A resource group with no dataset: only the schema before legacy
        074 can hold one (after it a resource names its dataset)."""
        if not self.load.has("resource_group"):
            return
        history = self.history(self.when(), "dgu_support", "resource group")
        self.versioned("resource_group", {
            "id": KNOWN.orphan_resource_group_id, "package_id": None,
            "label": "default", "sort_order": "", "extras": "{}"}, history)
        for position in range(2):
            self.resource((KNOWN.orphan_resource_group_id, None), position,
                          history,
                          f"https://www.example.gov.uk/lost/{position}.csv",
                          "CSV", "File of a dataset that was purged")

    # -- everything that hangs off users and datasets ---------------------
    def build_user_history(self) -> None:
        rng = self.rng
        known = KNOWN
        packages = [p for p in self.packages]
        visitor, logged_in = (self.by_name["visitor"],
                              self.by_name["logged_in"])
        # CKAN 1.x's default system roles, never removed by 2.x.
        for user, role in ((visitor, "reader"), (logged_in, "editor")):
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "System", role,
                          None)
            self.load.add("system_role", uor)
        auth_group = self.uuid()
        self.load.add("authorization_group", auth_group, "dgu-editors-legacy",
                      self.start)
        historic = [self.by_name[n] for n in known.non_publishing_with_history]
        others = [u for u in self.users[self.special_users:]
                  if not u.publishing]
        sample = historic + rng.sample(others, len(others) // 3)
        for user in sample:
            package_id, _name, moment = rng.choice(packages)
            self.load.add("rating", self.uuid(), user.id, None,
                          float(rng.randint(1, 5)), self.later(moment),
                          package_id)
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "Package",
                          "admin", None)
            self.load.add("package_role", uor, package_id)
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "Group",
                          "editor", None)
            self.load.add("group_role", uor, rng.choice(self.publishers).id)
            self.load.add("dashboard", user.id, self.later(moment),
                          self.later(moment))
            followed = rng.choice(self.users[3:])
            if followed is not user:
                self.load.add("user_following_user", user.id, followed.id,
                              self.later(moment))
            self.load.add("user_following_dataset", user.id, package_id,
                          self.later(moment))
            self.load.add("user_following_group", user.id,
                          rng.choice(self.publishers).id, self.later(moment))
            self.load.add("publisher_request", self.uuid(), user.name,
                          rng.choice(self.publishers).name,
                          "I work there and would like to publish data.",
                          self.later(moment), None, None, self.uuid())
        # Someone publishing follows a user who will be deleted.
        self.load.add("user_following_user",
                      self.by_name[known.publishing_admin].id, historic[0].id,
                      self.later(self.start))
        first = historic[0]
        self.load.add("authorization_group_user", auth_group, first.id,
                      self.uuid())
        uor = self.uuid()
        self.load.add("user_object_role", uor, None, "AuthorizationGroup",
                      "editor", auth_group)
        self.load.add("authorization_group_role", uor, auth_group)
        # Anonymous ratings.
        for package_id, _name, moment in rng.sample(
                packages, max(1, len(packages) // 50)):
            self.load.add("rating", self.uuid(), None,
                          f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                          float(rng.randint(1, 5)), self.later(moment),
                          package_id)
        # Publishing users have dashboards too.
        for user in self.users:
            if user.publishing and rng.random() < 0.5:
                self.load.add("dashboard", user.id, self.later(user.created),
                              self.later(user.created))
        self.load.maybe_flush()

    def build_misc(self) -> None:
        rng = self.rng
        packages = self.packages
        # related items (apps/ideas)
        for number in range(max(2, len(packages) // 200)):
            related_id = self.uuid()
            package_id, _name, moment = rng.choice(packages)
            self.load.add("related", related_id, "application",
                          f"App number {number}", "Uses open data.", None,
                          f"https://apps.example.org/{number}",
                          self.later(moment), rng.choice(self.users[3:]).id,
                          rng.randint(0, 500), 0)
            self.load.add("related_dataset", self.uuid(), package_id,
                          related_id, "active")
        for index, (key, value) in enumerate((
                ("ckan.site_title", "data.gov.uk"),
                ("ckan.site_description", "Opening up government"),
                ("ckan.main_css", "/base/css/main.css")), start=1):
            revision_id = self.revision(self.start, "dgu_support",
                                        f"system setting {key}")
            self.load.add("system_info", index, key, value, revision_id)
        package_extra_relation = rng.sample(packages, min(3, len(packages)))
        if len(package_extra_relation) >= 2:
            subject, obj = package_extra_relation[0], package_extra_relation[1]
            history = self.history(subject[2], "dgu_support", "relationship")
            self.versioned("package_relationship", {
                "id": self.uuid(), "subject_package_id": subject[0],
                "object_package_id": obj[0], "type": "child_of",
                "comment": ""}, history)
        for package_id, name, moment in rng.sample(
                packages, max(1, len(packages) // 10)):
            self.load.add("task_status", self.uuid(), package_id, "package",
                          "qa", "status", "ok", "done", None,
                          self.later(moment))
            self.load.add("tracking_summary",
                          f"/dataset/{name}", package_id, "page",
                          rng.randint(1, 100), rng.randint(100, 9000),
                          rng.randint(0, 100), self.later(moment).date())
            self.load.add("data_cache", self.uuid(), package_id,
                          "openness_score", str(rng.randint(0, 5)),
                          self.later(moment))
        for schema_id, url, title in (
                (ORGANOGRAM_SCHEMA_CENTRAL,
                 "https://github.com/datagovuk/schemas/tree/master/organogram",
                 "Organisation structure including senior roles & junior "
                 "staff numbers (central government)"),
                (ORGANOGRAM_SCHEMA_LOCAL,
                 "https://github.com/datagovuk/schemas/tree/master/organogram",
                 "Organisation structure including senior roles & junior "
                 "staff numbers (local authority)"),
                (special_id("spend-schema"),
                 "https://github.com/datagovuk/schemas/tree/master/spend",
                 "Spend over £25,000 in local government")):
            self.load.add("schema", schema_id, url, title)
        for number in range(3):
            self.load.add("codelist", self.uuid(),
                          f"https://example.org/codelist/{number}",
                          f"Code list {number}")
        for package_id, name, moment in rng.sample(
                packages, max(1, len(packages) // 100)):
            self.load.add("commitment", self.uuid(), "PM letter",
                          f"Publish {name}", "", f"https://data.gov.uk/dataset/{name}",
                          rng.choice(self.publishers).name, "dgu_support",
                          name, self.later(moment), "active")
        self.orphan_resource_group()
        if self.harvest:
            harvested = [p for p in packages[7:7 + len(OLD_HARVEST_TYPES)]]
            for service, dataset in zip(harvested, harvested[1:]):
                self.load.add("harvest_coupled_resource", self.uuid(),
                              service[0], f"https://{service[1]}.gov.uk/"
                              f"csw?id={dataset[1]}", dataset[0])
        self.load.flush()


def _set_aside_constraints(cursor) -> tuple[list, list]:
    """Drop the foreign keys and plain indexes of the public schema (kept:
    primary keys, unique constraints), returning what restores them.  Rows
    copied into bare tables load many times faster; adding the constraints
    back checks every row at once, as pg_restore does."""
    cursor.execute("""
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE contype = 'f'
        AND connamespace = 'public'::regnamespace ORDER BY 1, 2""")
    foreign_keys = cursor.fetchall()
    cursor.execute("""
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        AND indexname NOT IN (SELECT conname FROM pg_constraint
                              WHERE contype IN ('p', 'u'))
        ORDER BY 1""")
    indexes = cursor.fetchall()
    for table, name, _definition in foreign_keys:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return foreign_keys, indexes


def _restore_constraints(cursor, foreign_keys, indexes) -> None:
    for _name, definition in indexes:
        cursor.execute(definition)
    for table, name, definition in foreign_keys:
        cursor.execute(
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def _check_empty_old_schema(cursor, url, harvest: bool) -> int:
    """Refuse what populate cannot fill; the schema's legacy version."""
    cursor.execute("SELECT to_regclass('public.migrate_version'), "
                   "to_regclass('public.harvest_source')")
    migrate_version, harvest_source = cursor.fetchone()
    if migrate_version is None:
        raise OperatorError(f"{db.safe_url(url)} has no old (CKAN 2.2) "
                            "schema: build it first (build_schema)")
    if harvest and harvest_source is None:
        raise OperatorError(f"{db.safe_url(url)} has no harvest tables: "
                            "populate it with harvest=False")
    cursor.execute("SELECT EXISTS (SELECT 1 FROM package)")
    if cursor.fetchone()[0]:
        raise OperatorError(f"{db.safe_url(url)} already holds datasets: "
                            "populate needs an empty old schema")
    cursor.execute("SELECT version FROM migrate_version "
                   "WHERE repository_path = %s", (MIGRATE_REPOSITORY_PATH,))
    return cursor.fetchone()[0]


def populate(url, datasets: int = 200, seed: int = 1, harvest: bool = True,
             progress: Progress = None) -> dict:
    """Fill the old schema of ``url`` (``build_schema``) with a site of
    ``datasets`` datasets, deterministic from ``seed``, in one transaction.
    Returns the number of rows per table."""
    if datasets < MIN_DATASETS:
        raise OperatorError(
            f"--datasets must be at least {MIN_DATASETS} (got {datasets})")
    started = time.monotonic()
    connection = db.connect(url)
    try:
        with connection:
            with connection.cursor() as cursor:
                version = _check_empty_old_schema(cursor, url, harvest)
                cursor.execute("SET LOCAL synchronous_commit = off")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                foreign_keys, indexes = _set_aside_constraints(cursor)
                loader = _Loader(cursor, progress, version)
                generator = _Generator(loader, datasets, seed, harvest,
                                       progress)
                steps = [("users", generator.build_users),
                         ("publishers", generator.build_publishers),
                         ("memberships", generator.build_memberships)]
                if harvest:
                    steps.append(("harvest sources",
                                  generator.build_harvest_sources))
                steps += [("tags", generator.build_tags),
                          ("datasets", generator.build_datasets),
                          ("user history", generator.build_user_history),
                          ("other tables", generator.build_misc)]
                for label, step in steps:
                    step_started = time.monotonic()
                    step()
                    _say(progress, f"{label}: done "
                         f"({time.monotonic() - step_started:.1f}s)")
                loader.flush()
                step_started = time.monotonic()
                _restore_constraints(cursor, foreign_keys, indexes)
                _say(progress, f"indexes and foreign keys: {len(indexes)} and "
                     f"{len(foreign_keys)} added back, every row checked "
                     f"({time.monotonic() - step_started:.1f}s)")
                cursor.execute("SELECT setval('system_info_id_seq', "
                               "(SELECT max(id) FROM system_info))")
                cursor.execute("ANALYZE")
    except OperatorError:
        raise
    except Exception as error:
        raise OperatorError(f"cannot populate {db.safe_url(url)}: "
                            f"{db.first_line(error)}") from error
    finally:
        connection.close()
    counts = {table: count for table, count in loader.counts.items() if count}
    for table, count in counts.items():
        _say(progress, f"  {table}: {count} rows "
             f"({loader.seconds[table]:.1f}s copying)")
    _say(progress, f"populated {datasets} datasets, {sum(counts.values())} "
         f"rows in {time.monotonic() - started:.1f}s")
    return counts


def generate(url, datasets: int = 200, seed: int = 1, harvest: bool = True,
             progress: Progress = None, version: int = LEGACY_VERSION) -> dict:
    """``build_schema`` then ``populate``: a whole old site at legacy
    ``version``."""
    if datasets < MIN_DATASETS:
        raise OperatorError(
            f"--datasets must be at least {MIN_DATASETS} (got {datasets})")
    build_schema(url, harvest=harvest, progress=progress, version=version)
    return populate(url, datasets=datasets, seed=seed, harvest=harvest,
                    progress=progress)


def write_dump(url, path: str) -> None:
    """A custom-format dump of the site as the old operators would make it:
    no owners, no privileges."""
    result = subprocess.run(
        ["pg_dump", "-Fc", "-O", "-x", "-f", path],
        env=db.libpq_env(url), capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise OperatorError(f"pg_dump of {db.safe_url(url)} failed: "
                            f"{message[0] if message else result.returncode}")


def content_checksum(url, tables: Optional[Iterable[str]] = None) -> str:
    """One md5 over every row of every (or the given) public table, each
    table's rows sorted: equal for equal content."""
    connection = db.connect(url)
    try:
        with connection.cursor() as cursor:
            if tables is None:
                cursor.execute("SELECT tablename FROM pg_tables WHERE "
                               "schemaname = 'public' ORDER BY tablename")
                tables = [row[0] for row in cursor.fetchall()]
            digests = []
            for table in tables:
                cursor.execute(
                    f'SELECT md5(coalesce(string_agg(t::text, E\'\\n\' '
                    f'ORDER BY t::text), \'\')) FROM "{table}" t')
                digests.append(f"{table}:{cursor.fetchone()[0]}")
            cursor.execute("SELECT md5(%s)", ("\n".join(digests),))
            return cursor.fetchone()[0]
    finally:
        connection.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ckanext.datagovuk.testing.oldsite",
        description="Build an old data.gov.uk (CKAN 2.2) site in the empty "
                    "database URL.")
    parser.add_argument("url", metavar="URL",
                        help="postgresql:// URL of an empty database")
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--legacy-version", type=int, default=LEGACY_VERSION,
                        metavar="V",
                        help="CKAN's sqlalchemy-migrate version of the site "
                             f"(default {LEGACY_VERSION}, CKAN 2.2)")
    parser.add_argument("--no-harvest", action="store_true",
                        help="leave out the old harvest tables")
    parser.add_argument("--dump", metavar="PATH",
                        help="also write a custom-format dump to PATH")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        counts = generate(args.url, datasets=args.datasets, seed=args.seed,
                          harvest=not args.no_harvest, progress=progress,
                          version=args.legacy_version)
        if args.dump:
            started = time.monotonic()
            write_dump(args.url, args.dump)
            progress(f"dump: {args.dump} ({time.monotonic() - started:.1f}s)")
    except OperatorError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(f"{db.safe_url(args.url)}: {counts.get('package', 0)} datasets, "
          f"{counts.get('group', 0)} publishers, {counts.get('user', 0)} "
          f"users, {sum(counts.values())} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
