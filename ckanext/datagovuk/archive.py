"""Keep what the new CKAN does not: the schema ``datagovuk_legacy``.

Two kinds of table leave the live (``public``) schema before CKAN's upgrade:

* tables CKAN does not know (the DGU-only tables, the old harvest tables
  unless the target config enables ``harvest``, anything else a site added)
  are MOVED there with ``ALTER TABLE ... SET SCHEMA``, after their foreign
  keys to and from the live schema are dropped.  They have to leave
  ``public`` or ``ckan db check`` fails; nothing here ever drops them.
* tables CKAN's upgrade drops (the ``*_revision`` history, ``revision``, the
  old authorization tables, ``related``, ``rating``, ``resource_group``,
  ``package_extra``/``group_extra`` ...) and the tags with their history
  (which the data migration deletes) are COPIED there (``CREATE TABLE ...
  AS SELECT``: data only, no keys), because the upgrade needs the
  originals.  :func:`copy_history` takes these copies before any data
  migration runs, so they hold the site as it was; a copy is taken once
  and kept by later runs.  ``archive_dropped=False`` (``--no-archive``)
  skips the copies only.

Other extensions' rows of ``migrate_version`` move to
``datagovuk_legacy.migrate_version`` with the copies.

Archived tables keep no foreign key into the live schema, so ``ckan db
check`` stays clean and ``DROP SCHEMA datagovuk_legacy CASCADE`` purges the
lot.  Nothing here commits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk import db, legacy
from ckanext.datagovuk.errors import OperatorError

LEGACY_SCHEMA = "datagovuk_legacy"

DGU_TABLES = ("data_cache", "publisher_request", "schema", "codelist",
              "commitment")
HARVEST_TABLES = ("harvest_source", "harvest_job", "harvest_object",
                  "harvest_object_extra", "harvest_object_error",
                  "harvest_gather_error", "harvest_coupled_resource",
                  "harvest_log")

# Tables CKAN's migrations after legacy 071 drop in their upgrade(), with
# the revision doing it (grep drop_table/DROP TABLE in ckan/migration/
# versions/07[2-9]..109).  migrate_version (090): CKAN's own row says
# nothing once the upgrade has run; the other extensions' rows are moved
# (archive_migrate_version_rows).
DROPPED_BY_UPGRADE = {
    "resource_group": "074", "resource_group_revision": "074",
    "role_action": "078", "package_role": "078", "group_role": "078",
    "system_role": "078", "authorization_group_role": "078",
    "user_object_role": "078",
    "related": "083", "related_dataset": "083",
    "authorization_group_user": "087", "authorization_group": "087",
    "rating": "105",
    "group_extra": "106", "package_extra": "106",
    "package_relationship_revision": "107", "group_extra_revision": "107",
    "system_info_revision": "107", "package_revision": "107",
    "package_tag_revision": "107", "group_revision": "107",
    "package_extra_revision": "107", "resource_revision": "107",
    "member_revision": "107", "revision": "107",
}
# The tags and their history: the data migration deletes them (tags are a
# deprecated feature on the new site), and the history of the datasets
# needs them.  Copied with the tables CKAN's upgrade drops.
TAG_TABLES = ("tag", "package_tag", "package_tag_revision", "vocabulary")
# Revision 083 drops the related-item tables only when they are empty (it
# prints a warning and keeps them otherwise, and `ckan db check` then fails):
# their rows are archived (even with --no-archive: they must leave public)
# and deleted so that 083 drops them.  Children first.
EMPTIED_FOR_UPGRADE = ("related_dataset", "related")
# In CKAN's migrations but not in its core model: plugins own them, and
# CKAN's env.py leaves them out of `ckan db check` when those are disabled.
MIGRATION_ONLY_TABLES = ("activity", "activity_detail", "tracking_raw",
                         "tracking_summary", "alembic_version",
                         "migrate_version")

Progress = Callable[[str], None]


@dataclass
class ArchivedTable:
    name: str
    rows: int
    how: str          # "moved" or "copied"
    reason: str


@dataclass
class ArchiveResult:
    schema: str = LEGACY_SCHEMA
    tables: list[ArchivedTable] = field(default_factory=list)
    foreign_keys_dropped: list[str] = field(default_factory=list)
    emptied: dict[str, int] = field(default_factory=dict)
    # Rows of other extensions moved out of migrate_version.
    migrate_version_rows: int = 0

    def named(self, how: str) -> list[ArchivedTable]:
        return [table for table in self.tables if table.how == how]


def public_tables(connection: Connection) -> list[str]:
    """Ordinary tables of ``public`` that no extension owns (PostGIS's
    ``spatial_ref_sys`` moves with its extension, not with us)."""
    return list(connection.exec_driver_sql(
        "SELECT c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
        "AND d.classid = 'pg_class'::regclass AND d.deptype = 'e') "
        "ORDER BY c.relname").scalars())


def known_tables() -> set[str]:
    """Tables CKAN 2.12's model (with the loaded plugins) defines."""
    import ckan.model
    from ckan.model import meta

    # CKAN's test fixture clean_db rebinds meta.metadata to a reflection of
    # the test database; the repository keeps the model's own MetaData.
    return {table.name for metadata in (ckan.model.repo.metadata, meta.metadata)
            for table in metadata.sorted_tables}


def classify(tables: Iterable[str], plugins: Iterable[str],
             known: Optional[set[str]] = None,
             running: Optional[set[int]] = None
             ) -> tuple[list[str], list[str]]:
    """Which of ``tables`` to move (unknown to the new CKAN) and which to
    copy (dropped by its upgrade).  ``running``: the legacy numbers of the
    core revisions still to run (all when None); a table whose dropping
    revision has already run is unknown, so moved."""
    known = known_tables() if known is None else known
    plugins = set(plugins)
    keep = set(known) | set(MIGRATION_ONLY_TABLES)
    if "harvest" in plugins:
        keep |= set(HARVEST_TABLES)
    move, copy = [], []
    for table in tables:
        if table in DROPPED_BY_UPGRADE and (
                running is None or
                int(DROPPED_BY_UPGRADE[table]) in running):
            copy.append(table)
        elif table in DROPPED_BY_UPGRADE:
            move.append(table)
        elif table.endswith("_alembic_version"):
            continue
        elif table in DGU_TABLES or table not in keep:
            move.append(table)
    return move, copy


def _qualified(schema: str, table: str) -> str:
    return f"{db.quote_identifier(schema)}.{db.quote_identifier(table)}"


def _row_count(connection: Connection, schema: str, table: str) -> int:
    return connection.exec_driver_sql(
        f"SELECT count(*) FROM {_qualified(schema, table)}").scalar()


def _exists(connection: Connection, schema: str, table: str) -> bool:
    return connection.exec_driver_sql(
        "SELECT to_regclass(%(name)s) IS NOT NULL",
        {"name": _qualified(schema, table)}).scalar()


def drop_foreign_keys_across(connection: Connection,
                             tables: list[str]) -> list[str]:
    """Drop the foreign keys between ``tables`` and the rest of
    ``public``, both ways; keys among ``tables`` themselves stay."""
    if not tables:
        return []
    rows = connection.exec_driver_sql(
        "SELECT c.conname, src.relname, dst.relname FROM pg_constraint c "
        "JOIN pg_class src ON src.oid = c.conrelid "
        "JOIN pg_class dst ON dst.oid = c.confrelid "
        "JOIN pg_namespace ns ON ns.oid = src.relnamespace "
        "JOIN pg_namespace nd ON nd.oid = dst.relnamespace "
        "WHERE c.contype = 'f' AND ns.nspname = 'public' "
        "AND nd.nspname = 'public' "
        "AND ((src.relname = ANY(%(t)s)) <> (dst.relname = ANY(%(t)s))) "
        "ORDER BY src.relname, c.conname", {"t": list(tables)}).all()
    dropped = []
    for name, source, target in rows:
        connection.exec_driver_sql(
            f"ALTER TABLE {_qualified('public', source)} "
            f"DROP CONSTRAINT {db.quote_identifier(name)}")
        dropped.append(f"{source}.{name} -> {target}")
    return dropped


def move_tables(connection: Connection, tables: list[str], reasons: dict,
                result: ArchiveResult,
                progress: Optional[Progress] = None) -> None:
    for table in tables:
        if _exists(connection, LEGACY_SCHEMA, table):
            raise OperatorError(
                f"cannot archive table {table}: {LEGACY_SCHEMA}.{table} "
                "already exists (an earlier migration archived one); rename "
                "or drop one of them first")
    result.foreign_keys_dropped += drop_foreign_keys_across(connection,
                                                            tables)
    for table in tables:
        connection.exec_driver_sql(
            f"ALTER TABLE {_qualified('public', table)} "
            f"SET SCHEMA {db.quote_identifier(LEGACY_SCHEMA)}")
        result.tables.append(ArchivedTable(
            table, _row_count(connection, LEGACY_SCHEMA, table), "moved",
            reasons[table]))
        if progress:
            progress(f"    moved {table} ({result.tables[-1].rows} rows)")


def _copy_reason(table: str) -> str:
    if table in DROPPED_BY_UPGRADE:
        return f"dropped by CKAN migration {DROPPED_BY_UPGRADE[table]}"
    return "tags, which the data migration deletes"


def not_copied_yet(connection: Connection, tables: Iterable[str]) -> list[str]:
    """``tables`` without a copy in the archive.  A copy left by an earlier
    run (``--skip-upgrade``) is kept: it was taken before that run's data
    migrations changed the live table."""
    return [table for table in tables
            if not _exists(connection, LEGACY_SCHEMA, table)]


def copy_tables(connection: Connection, tables: list[str],
                result: ArchiveResult,
                progress: Optional[Progress] = None) -> None:
    for table in not_copied_yet(connection, tables):
        started = time.monotonic()
        # The statement's own count: no second scan of the copy.
        rows = connection.exec_driver_sql(
            f"CREATE TABLE {_qualified(LEGACY_SCHEMA, table)} AS "
            f"SELECT * FROM {_qualified('public', table)}").rowcount
        result.tables.append(ArchivedTable(table, rows, "copied",
                                           _copy_reason(table)))
        if progress:
            progress(f"    copied {table} ({result.tables[-1].rows} rows, "
                     f"{time.monotonic() - started:.1f} s)")


def rows_to_empty(connection: Connection,
                  tables: Iterable[str]) -> dict[str, int]:
    """The tables of EMPTIED_FOR_UPGRADE among ``tables`` that hold rows."""
    return {table: rows for table in EMPTIED_FOR_UPGRADE if table in tables
            for rows in [_row_count(connection, "public", table)] if rows}


def empty_for_upgrade(connection: Connection, copy: list[str],
                      archive_dropped: bool, result: ArchiveResult) -> None:
    full = rows_to_empty(connection, copy)
    if not full:
        return
    if not archive_dropped:
        copy_tables(connection, [t for t in EMPTIED_FOR_UPGRADE if t in copy],
                    result)
    for table in EMPTIED_FOR_UPGRADE:
        if table in full:
            connection.exec_driver_sql(
                f"DELETE FROM {_qualified('public', table)}")
    result.emptied = full


def archive_migrate_version_rows(connection: Connection,
                                 result: ArchiveResult,
                                 progress: Optional[Progress] = None) -> None:
    """Other extensions' rows of ``migrate_version`` (even with
    --no-archive: CKAN reads the first row it finds, and revision 090 drops
    the table)."""
    result.migrate_version_rows += legacy.move_other_rows(connection,
                                                          LEGACY_SCHEMA)
    if progress and result.migrate_version_rows:
        progress(f"    moved {result.migrate_version_rows} other extensions' "
                 "row(s) of migrate_version")


def plan(connection: Connection, plugins: Iterable[str],
         known: Optional[set[str]] = None) -> tuple[list[str], list[str]]:
    from ckanext.datagovuk.upgrade import revisions_to_run
    return classify(public_tables(connection), plugins, known,
                    revisions_to_run(connection))


def history_tables(connection: Connection, copy: list[str]) -> list[str]:
    """What :func:`copy_history` copies: the tables CKAN's upgrade drops
    (``copy``, from :func:`plan`) and, when there are any, the tags."""
    if not copy:
        return []
    public = set(public_tables(connection))
    return copy + [table for table in TAG_TABLES
                   if table in public and table not in copy]


def history_to_copy(connection: Connection, plugins: Iterable[str] = (),
                    archive_dropped: bool = True,
                    known: Optional[set[str]] = None) -> list[str]:
    """The tables :func:`copy_history` copies now."""
    if not archive_dropped:
        return []
    _, copy = plan(connection, plugins, known)
    return not_copied_yet(connection, history_tables(connection, copy))


def copy_history(connection: Connection, plugins: Iterable[str] = (),
                 archive_dropped: bool = True,
                 progress: Optional[Progress] = None,
                 known: Optional[set[str]] = None,
                 result: Optional[ArchiveResult] = None) -> ArchiveResult:
    """Copy what CKAN's upgrade drops and the tags (unless
    ``archive_dropped`` is false), and move the other extensions' rows of
    ``migrate_version``: run before the data migrations, so that the
    archive holds the site as it was."""
    result = result if result is not None else ArchiveResult()
    tables = history_to_copy(connection, plugins, archive_dropped, known)
    if not tables and not legacy.other_rows(connection):
        return result
    connection.exec_driver_sql(
        f"CREATE SCHEMA IF NOT EXISTS {db.quote_identifier(LEGACY_SCHEMA)}")
    archive_migrate_version_rows(connection, result, progress)
    if progress and tables:
        progress(f"  copying {len(tables)} tables (what CKAN's upgrade drops, "
                 f"and the tags) to {LEGACY_SCHEMA}")
    copy_tables(connection, tables, result, progress)
    return result


def archive(connection: Connection, plugins: Iterable[str] = (),
            archive_dropped: bool = True,
            progress: Optional[Progress] = None,
            known: Optional[set[str]] = None,
            result: Optional[ArchiveResult] = None) -> ArchiveResult:
    """Copy the history (:func:`copy_history`, if not done yet), move the
    unknown tables into ``datagovuk_legacy`` and empty the related-item
    tables; adds to ``result`` (that of an earlier :func:`copy_history`)."""
    plugins = list(plugins)
    result = copy_history(connection, plugins, archive_dropped, progress,
                          known, result)
    move, copy = plan(connection, plugins, known)
    if not move and not rows_to_empty(connection, copy):
        return result
    connection.exec_driver_sql(
        f"CREATE SCHEMA IF NOT EXISTS {db.quote_identifier(LEGACY_SCHEMA)}")
    reasons = {}
    for table in move:
        if table in DGU_TABLES:
            reasons[table] = "data.gov.uk only"
        elif table in HARVEST_TABLES:
            reasons[table] = "old harvest table (harvest plugin not enabled)"
        elif table in DROPPED_BY_UPGRADE:
            reasons[table] = ("left behind by an earlier upgrade (CKAN "
                              f"migration {DROPPED_BY_UPGRADE[table]})")
        else:
            reasons[table] = "not part of CKAN 2.12's model"
    if progress and move:
        progress(f"  moving {len(move)} tables to {LEGACY_SCHEMA}")
    move_tables(connection, move, reasons, result, progress)
    empty_for_upgrade(connection, copy, archive_dropped, result)
    if progress and result.emptied:
        progress(f"  emptied {', '.join(result.emptied)} (archived) so that "
                 "CKAN's revision 083 drops them")
    return result
