"""The checks of ``datagovuk verify``: ONE registry (:data:`REGISTRY`),
each entry comparing one kind of record of the migrated database with the
manifest by the rules of :mod:`rules`.

A check reads the database only, counts what it compared and notes each
difference (subject, field, expected, found); the first ones are kept in
full.  A check that cannot apply (the archive after ``--no-archive``)
raises :class:`Skipped` with the reason.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk.verify import rules
from ckanext.datagovuk.verify.manifest import Manifest

ABSENT = "(absent)"
DIFFERENCES_KEPT = 20
SQL_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Difference:
    subject: str          # "dataset NAME", "user NAME", "table NAME", ...
    field: str
    expected: Any
    found: Any

    def __str__(self) -> str:
        return (f"{self.subject}: {self.field}: expected {self.expected!r}, "
                f"found {self.found!r}")


@dataclass
class CheckResult:
    name: str
    what: str
    compared: int = 0
    result: str = "ok"            # ok, failed or skipped
    reason: str = ""
    differences: int = 0
    first: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result != "failed"

    def line(self) -> str:
        if self.result == "skipped":
            return f"{self.name}: skipped ({self.reason})"
        status = "ok" if self.ok else \
            f"FAILED, {self.differences} difference(s); first: {self.first[0]}"
        return f"{self.name}: {self.compared} {self.what}: {status}"


class Skipped(Exception):
    """The check does not apply to this move (the reason is the message)."""


@dataclass
class Context:
    connection: Connection
    manifest: Manifest
    migrated: bool                 # 001 ran on the manifest's data
    promoted: frozenset[str]       # user ids `datagovuk promote` promoted
    result: Optional[CheckResult] = None

    def rows(self, sql: str, params: Optional[dict] = None):
        return self.connection.exec_driver_sql(sql, params or {}).all()

    def differ(self, subject: str, name: str, expected, found) -> None:
        result = self.result
        result.differences += 1
        result.result = "failed"
        if len(result.first) < DIFFERENCES_KEPT:
            result.first.append(Difference(subject, name, expected, found))

    def compare(self, subject: str, pairs: dict[str, tuple]) -> None:
        for name, (expected, found) in pairs.items():
            if expected != found:
                self.differ(subject, name, expected, found)

    def count(self, table: str) -> int:
        return self.connection.exec_driver_sql(
            f"SELECT count(*) FROM {table}").scalar()

    def has(self, table: str) -> bool:
        return bool(self.connection.exec_driver_sql(
            "SELECT to_regclass(%(t)s) IS NOT NULL", {"t": table}).scalar())


@dataclass(frozen=True)
class Check:
    name: str
    what: str                      # what is counted, plural
    run: Callable[[Context], int]  # returns how many were compared


@functools.cache
def _sql(name: str) -> str:
    """A check's query, from its file beside this module."""
    with open(os.path.join(SQL_DIR, name), encoding="utf-8") as handle:
        return handle.read()


# Datasets -------------------------------------------------------------------

def datasets(ctx: Context) -> int:
    for (name, kind, state, title, notes, owner, licence, present,
         *found) in ctx.rows(_sql("check_datasets.sql")):
        subject = f"dataset {name}"
        if not present:
            ctx.differ(subject, "dataset", "present", ABSENT)
            continue
        ctx.compare(subject, {
            "name": (name, found[0]), "type": (kind, found[1]),
            "state": (state, found[2]), "title": (title, found[3]),
            "notes (md5)": (notes, found[4]), "owner_org": (owner, found[5]),
            "license_id": (licence, found[6])})
    for (name,) in ctx.rows(
            "SELECT name FROM package p WHERE NOT EXISTS (SELECT 1 FROM "
            "datagovuk.manifest_dataset m WHERE m.id = p.id) ORDER BY name"):
        ctx.differ(f"dataset {name}", "dataset", ABSENT, "present")
    return ctx.count("datagovuk.manifest_dataset")


def dataset_extras(ctx: Context) -> int:
    rows = ctx.rows(_sql("check_dataset_extras.sql"),
                    {"mapped": sorted(rules.MAPPED_EXTRAS)})
    for name, old, found in rows:
        # Often only the keys of MAPPED_EXTRAS: the query leaves out the
        # others when they are the same on both sides.
        expected = rules.dataset_extras(old, ctx.migrated)
        _compare_extras(ctx, f"dataset {name}", expected, found)
    return len(rows)


def _compare_extras(ctx: Context, subject: str, expected: dict,
                    found: dict) -> None:
    if expected == found:       # the common case, without a key's walk
        return
    for key in sorted(set(expected) | set(found)):
        if expected.get(key, ABSENT) != found.get(key, ABSENT):
            ctx.differ(subject, f"extra {key}", expected.get(key, ABSENT),
                       found.get(key, ABSENT))


# Resources ------------------------------------------------------------------

def resources(ctx: Context) -> int:
    base = ctx.manifest.organogram_base_url
    rows = ctx.rows(_sql("check_resources.sql"),
                    {"old_files": rules.OLD_FILES})
    for (rid, dataset, schema, vocabulary, package_id, url, fmt, name,
         description, viewer, position, present, state, *found) in rows:
        # only the keys the organogram rule reads, not every extra per row
        extras = {"schema": schema, "schema-vocabulary": vocabulary}
        subject = f"dataset {dataset} resource {rid}"
        kept = rules.resource_kept(viewer, ctx.migrated)
        if not present:
            ctx.differ(subject, "resource", "present", ABSENT)
            continue
        if state != ("active" if kept else "deleted"):
            ctx.differ(subject, "state", "active" if kept else "deleted",
                       state)
        expected = (package_id, rules.resource_url(url, fmt, extras, base,
                                                   ctx.migrated),
                    fmt, name, description, position)
        if kept and expected != tuple(found):
            ctx.compare(subject, dict(zip(
                ("package_id", "url", "format", "name", "description (md5)",
                 "position"), zip(expected, found))))
    for rid, dataset in ctx.rows(
            "SELECT r.id, p.name FROM resource r JOIN package p "
            "ON p.id = r.package_id WHERE r.state = 'active' AND NOT EXISTS "
            "(SELECT 1 FROM datagovuk.manifest_resource m WHERE m.id = r.id) "
            "ORDER BY p.name, r.id"):
        ctx.differ(f"dataset {dataset} resource {rid}", "resource", ABSENT,
                   "active")
    return ctx.count("datagovuk.manifest_resource")


# Publishers -----------------------------------------------------------------

def publishers(ctx: Context) -> int:
    rows = ctx.rows(
        "SELECT m.name, m.title, m.state, m.is_organization, m.extras, "
        "m.parents, g.id IS NOT NULL, g.name, g.title, g.state, "
        "g.is_organization, coalesce(g.extras, '{}'::jsonb), ARRAY("
        "SELECT x.table_id FROM member x WHERE x.group_id = g.id AND "
        "x.table_name = 'group' AND x.capacity = 'parent' "
        "AND x.state = 'active' ORDER BY x.table_id) "
        'FROM datagovuk.manifest_group m LEFT JOIN "group" g ON g.id = m.id')
    for (name, title, state, organization, extras, parents, present,
         *found) in rows:
        subject = f"publisher {name}" if organization else f"group {name}"
        if not present:
            ctx.differ(subject, "group", "present", ABSENT)
            continue
        ctx.compare(subject, {
            "name": (name, found[0]), "title": (title, found[1]),
            "state": (state, found[2]),
            "is_organization": (organization, found[3]),
            "parents": (list(parents), list(found[5]))})
        _compare_extras(ctx, subject, rules.stored_extras(extras), found[4])
    return len(rows)


# Users ----------------------------------------------------------------------

def users(ctx: Context) -> int:
    recorded = "d.user_id IS NOT NULL" if ctx.has(
        "datagovuk.demoted_sysadmins") else "false"
    join = ("LEFT JOIN datagovuk.demoted_sysadmins d ON d.user_id = m.id"
            if recorded != "false" else "")
    rows = ctx.rows(
        "SELECT m.id, m.name, m.state, m.sysadmin, m.publisher, m.spared, "
        "m.demoted_before, u.id IS NOT NULL, u.name, u.state, "
        f"coalesce(u.sysadmin, false), {recorded} "
        'FROM datagovuk.manifest_user m LEFT JOIN "user" u ON u.id = m.id '
        f"{join}")
    site_user = ctx.manifest.site_user
    for (uid, name, state, sysadmin, publisher, spared, demoted_before,
         present, new_name, new_state, new_sysadmin, recorded_) in rows:
        user = {"name": name, "sysadmin": sysadmin, "publisher": publisher,
                "spared": spared, "demoted_before": demoted_before}
        subject = f"user {name}"
        if not rules.user_kept(user, site_user, ctx.migrated):
            if present:
                ctx.differ(subject, "user", "deleted (never published)",
                           "present")
            continue
        if not present:
            ctx.differ(subject, "user", "present", ABSENT)
            continue
        expected = rules.user_sysadmin(user, ctx.migrated,
                                       uid in ctx.promoted)
        ctx.compare(subject, {"state": (state, new_state),
                              "sysadmin": (expected, new_sysadmin)})
        if not rules.user_name_ok(name, new_name, site_user, ctx.migrated):
            ctx.differ(subject, "name", name, new_name)
        if ctx.migrated and sysadmin and not spared and not recorded_:
            ctx.differ(subject, "recorded in datagovuk.demoted_sysadmins",
                       True, False)
    for (name,) in ctx.rows(
            'SELECT name FROM "user" u WHERE NOT EXISTS (SELECT 1 FROM '
            "datagovuk.manifest_user m WHERE m.id = u.id) "
            "AND name IS DISTINCT FROM %(site)s ORDER BY name",
            {"site": site_user}):
        ctx.differ(f"user {name}", "user", ABSENT, "present")
    return len(rows)


# Archive, tags, schema --------------------------------------------------------

def archive_counts(ctx: Context) -> int:
    from ckanext.datagovuk.archive import LEGACY_SCHEMA

    if not ctx.manifest.archive:
        raise Skipped("migrated with --no-archive")
    rows = ctx.rows("SELECT table_name, rows FROM datagovuk.manifest_archive "
                    "ORDER BY table_name")
    for table, expected in rows:
        found = ABSENT
        if ctx.has(f'{LEGACY_SCHEMA}."{table}"'):
            found = ctx.connection.exec_driver_sql(
                f'SELECT count(*) FROM {LEGACY_SCHEMA}."{table}"').scalar()
        ctx.compare(f"table {LEGACY_SCHEMA}.{table}", {"rows": (expected,
                                                                found)})
    return len(rows)


def no_tags(ctx: Context) -> int:
    if not ctx.migrated:
        raise Skipped("the data migration did not run: tags stay")
    for table in ("tag", "package_tag"):
        if ctx.has(f"public.{table}"):
            ctx.compare(f"table {table}", {"rows": (0, ctx.connection.
                        exec_driver_sql(f"SELECT count(*) FROM {table}")
                        .scalar())})
    return 2


def schema(ctx: Context) -> int:
    from ckanext.datagovuk.verify import model_schema

    found = model_schema.differences(ctx.connection)
    for difference in found:
        ctx.differ("schema", difference[0], "as CKAN's model",
                   " ".join(str(part) for part in difference[1:]))
    return model_schema.table_count()


REGISTRY: tuple[Check, ...] = (
    Check("datasets", "datasets (identity, state, title, notes, owner, "
          "licence)", datasets),
    Check("dataset extras", "datasets' extras (mapped by the rules)",
          dataset_extras),
    Check("resources", "active resources (dataset, url, format, name, "
          "description, position)", resources),
    Check("publishers", "groups and publishers (fields, extras, parents)",
          publishers),
    Check("users", "users (kept, deleted, demoted, spared, names)", users),
    Check("archive", "archived tables (row counts)", archive_counts),
    Check("tags", "tag tables empty", no_tags),
    Check("schema", "tables of CKAN's model (alembic compare_metadata)",
          schema),
)


def run(check: Check, ctx: Context) -> CheckResult:
    ctx.result = CheckResult(check.name, check.what)
    try:
        ctx.result.compared = check.run(ctx)
    except Skipped as skipped:
        ctx.result.result, ctx.result.reason = "skipped", str(skipped)
    return ctx.result
