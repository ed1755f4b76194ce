"""CKAN's schema upgrade of an old (2.2) database, on a connection we hold.

CKAN's alembic port of legacy migration 074 (``a4ca55f0f45e``, remove
resource groups) adds ``resource.package_id`` with a default of ``''`` and
drops ``resource_group_id`` without copying the dataset across, so revision
105's foreign key then fails on every resource.  The legacy
sqlalchemy-migrate 074 did copy it; :func:`upgrade_core` does what it did:
the resource -> dataset link is saved from ``resource_group`` before 074 and
written back right after it (for ``resource_revision`` too, unless
revision 107, which drops that table, runs in the same upgrade: relinking
it would be 280,000 row rewrites at data.gov.uk's size for nothing; the
archive keeps it with its ``resource_group_id``).  Resources whose dataset is
gone cannot be attached to anything and would fail 105, so they are deleted
with their ``resource_revision`` rows (the archive schema keeps a copy of
both).

Before all that, :func:`make_room_for_rewrites` rewrites ``package`` and
``resource`` with free space in every page: CKAN's revisions 084,
588d7cfb9a41 and faster-extras, our relink and the data migration's
``creator_user_id`` update each rewrite every row of one of them, and with
room on the page those become HOT updates that leave the tables' many
indexes alone, several times faster (docs/benchmark.rst, "Measurements
behind the code").

Then the migrations of the plugins the target config enables run, each
against its own ``<plugin>_alembic_version`` table, as ``ckan db upgrade``
does.  Nothing here commits: the caller owns the transaction.
"""
from __future__ import annotations

import inspect as pyinspect
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import alembic_runner, output
from ckanext.datagovuk.legacy import ckan_legacy_version

log = logging.getLogger(__name__)

# Legacy 074: the revision after which resource.resource_group_id is gone.
REMOVE_RESOURCE_GROUPS = "a4ca55f0f45e"
REMOVE_RESOURCE_GROUPS_NUMBER = 74
# 107 remove_revision_data: drops resource_revision and the other
# *_revision tables.
REMOVE_REVISION_DATA = "4eaa5fcf3092"
# Tables whose every row is rewritten, in the one migration transaction, by
# these revisions (REMOVE_RESOURCE_GROUPS: our relink right after it), and
# the fillfactor that leaves room on each page for that many new versions of
# its rows (package: one more, for 001's creator_user_id update).
WHOLE_TABLE_REWRITES = {
    "package": (("d85ce5783688", "12d64978ab44"), 25),
    "resource": ((REMOVE_RESOURCE_GROUPS, "588d7cfb9a41"), 33),
}

Progress = Callable[[str], None]


@dataclass
class RevisionTiming:
    source: str          # "core" or the plugin name
    revision: str
    doc: str
    seconds: float


@dataclass
class UpgradeResult:
    version_before: str
    version_after: str
    revisions: list[RevisionTiming] = field(default_factory=list)
    resources_relinked: int = 0
    resource_revisions_relinked: int = 0
    orphan_resources_deleted: int = 0
    orphan_resource_revisions_deleted: int = 0
    plugins: dict[str, tuple[Optional[str], Optional[str]]] = field(
        default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.revisions)


def describe_version(connection: Connection,
                     version_table: str = alembic_runner.CORE_VERSION_TABLE
                     ) -> str:
    """The schema version as an operator reads it: ``legacy 71``,
    ``alembic 4eaa5fcf3092 (head)``, or ``none``."""
    revision = alembic_runner.current_revision(connection, version_table)
    if revision:
        head = alembic_runner.head()
        return f"alembic {revision}" + (" (head)" if revision == head else "")
    legacy = ckan_legacy_version(connection)
    if legacy is not None:
        return f"legacy {legacy}"
    return "none"


def _timer(source: str, timings: list[RevisionTiming],
           progress: Optional[Progress], total: int):
    """Records each revision's time; the live line says which of
    ``total``, the per-revision line is detail (-v)."""
    def on_step(revision: str, doc: str, seconds: float) -> None:
        timings.append(RevisionTiming(source, revision, doc, seconds))
        if progress:
            first_line = doc.splitlines()[0] if doc else ""
            done = sum(1 for timing in timings if timing.source == source)
            output.live(progress, f"schema upgrade: {source} revision "
                        f"{done} of {total}")
            output.detail(progress, f"  {source} {revision} {first_line} "
                          f"({seconds:.1f} s)")
    return on_step


def _columns(connection: Connection, table: str) -> set[str]:
    inspector = inspect(connection)
    if not inspector.has_table(table):
        return set()
    return {column["name"] for column in inspector.get_columns(table)}


def revisions_to_run(connection: Connection) -> set[int]:
    """Legacy numbers of the core revisions the upgrade will run (those at
    or below a legacy version are skipped by CKAN's scripts)."""
    legacy = ckan_legacy_version(connection) or 0
    script = alembic_runner.script_directory()
    numbers = set()
    for revision in alembic_runner.pending_revisions(connection):
        prefix = os.path.basename(script.get_revision(revision).path)[:3]
        if prefix.isdigit() and int(prefix) > legacy:
            numbers.add(int(prefix))
    return numbers


def resource_group_fix_needed(connection: Connection,
                              legacy: Optional[int]) -> bool:
    """Whether revision 074 is still to run on a schema that links
    resources through resource groups."""
    if alembic_runner.current_revision(connection) is None and \
            legacy is not None and legacy >= REMOVE_RESOURCE_GROUPS_NUMBER:
        return False
    if REMOVE_RESOURCE_GROUPS not in alembic_runner.pending_revisions(
            connection):
        return False
    return "resource_group_id" in _columns(connection, "resource")


def save_resource_datasets(connection: Connection) -> None:
    """Remember, in temporary tables, the dataset of each resource and
    resource revision as its resource group names it."""
    groups = "SELECT id, package_id FROM resource_group"
    if inspect(connection).has_table("resource_group_revision"):
        # A group deleted since keeps its dataset in its revisions.
        groups = ("SELECT DISTINCT ON (id) id, package_id FROM ("
                  "SELECT id, package_id, 0 AS rank FROM resource_group "
                  "UNION ALL SELECT id, package_id, 1 FROM "
                  "resource_group_revision WHERE package_id IS NOT NULL) g "
                  "ORDER BY id, rank")
    connection.exec_driver_sql(
        "CREATE TEMP TABLE datagovuk_resource_dataset ON COMMIT DROP AS "
        f"SELECT r.id, g.package_id FROM resource r JOIN ({groups}) g "
        "ON g.id = r.resource_group_id WHERE g.package_id IS NOT NULL")
    if "resource_group_id" in _columns(connection, "resource_revision") \
            and REMOVE_REVISION_DATA not in alembic_runner.pending_revisions(
                connection):
        connection.exec_driver_sql(
            "CREATE TEMP TABLE datagovuk_resource_revision_dataset "
            "ON COMMIT DROP AS SELECT r.id, r.revision_id, g.package_id "
            f"FROM resource_revision r JOIN ({groups}) g "
            "ON g.id = r.resource_group_id WHERE g.package_id IS NOT NULL")


def restore_resource_datasets(connection: Connection,
                              result: UpgradeResult) -> None:
    result.resources_relinked = connection.exec_driver_sql(
        "UPDATE resource r SET package_id = s.package_id "
        "FROM datagovuk_resource_dataset s WHERE s.id = r.id").rowcount
    if inspect(connection).has_table("resource_revision"):
        exists = connection.exec_driver_sql(
            "SELECT to_regclass('pg_temp.datagovuk_resource_revision_dataset')"
        ).scalar()
        if exists:
            result.resource_revisions_relinked = connection.exec_driver_sql(
                "UPDATE resource_revision r SET package_id = s.package_id "
                "FROM datagovuk_resource_revision_dataset s "
                "WHERE s.id = r.id AND s.revision_id = r.revision_id"
            ).rowcount
    delete_orphan_resources(connection, result)
    for table in ("datagovuk_resource_dataset",
                  "datagovuk_resource_revision_dataset"):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{table}")


def delete_orphan_resources(connection: Connection,
                            result: UpgradeResult) -> None:
    """Resources whose dataset is gone, and their revisions (whose
    continuity_id still points at them until revision 095)."""
    connection.exec_driver_sql(
        "CREATE TEMP TABLE datagovuk_orphan_resource ON COMMIT DROP AS "
        "SELECT r.id FROM resource r WHERE NOT EXISTS "
        "(SELECT 1 FROM package p WHERE p.id = r.package_id)")
    if inspect(connection).has_table("resource_revision"):
        # Two statements, not one with OR: each is then a hash join.
        result.orphan_resource_revisions_deleted = sum(
            connection.exec_driver_sql(
                "DELETE FROM resource_revision r USING "
                f"datagovuk_orphan_resource o WHERE r.{column} = o.id"
            ).rowcount for column in ("continuity_id", "id"))
    if inspect(connection).has_table("resource_view"):
        connection.exec_driver_sql(
            "DELETE FROM resource_view v USING datagovuk_orphan_resource o "
            "WHERE v.resource_id = o.id")
    result.orphan_resources_deleted = connection.exec_driver_sql(
        "DELETE FROM resource r USING datagovuk_orphan_resource o "
        "WHERE r.id = o.id").rowcount
    connection.exec_driver_sql("DROP TABLE datagovuk_orphan_resource")


@dataclass
class RoomMade:
    table: str
    fillfactor: int
    bytes_before: int
    bytes_after: int


def make_room_for_rewrites(connection: Connection) -> list[RoomMade]:
    """Rewrite the tables of WHOLE_TABLE_REWRITES whose rewriting revisions
    are pending with free space in each page (CLUSTER on the primary key,
    which a transaction may run), so that those updates are HOT."""
    pending = set(alembic_runner.pending_revisions(connection))
    made = []
    for table, (revisions, fillfactor) in WHOLE_TABLE_REWRITES.items():
        if not pending.intersection(revisions):
            continue
        primary_key = connection.exec_driver_sql(
            "SELECT i.indexrelid::regclass::text FROM pg_index i "
            "WHERE i.indrelid = to_regclass(%(table)s) AND i.indisprimary",
            {"table": f"public.{table}"}).scalar()
        if primary_key is None:
            continue
        size = f"SELECT pg_relation_size('public.{table}')"
        before = connection.exec_driver_sql(size).scalar()
        connection.exec_driver_sql(
            f"ALTER TABLE public.{table} SET (fillfactor = {fillfactor})")
        connection.exec_driver_sql(
            f"CLUSTER public.{table} USING {primary_key}")
        made.append(RoomMade(table, fillfactor, before,
                             connection.exec_driver_sql(size).scalar()))
    return made


def reset_room(connection: Connection, made: Iterable[RoomMade]) -> None:
    """New pages fill up as usual again, and no table stays marked as
    clustered (a later CLUSTER would otherwise reorder it)."""
    for room in made:
        connection.exec_driver_sql(
            f"ALTER TABLE public.{room.table} RESET (fillfactor)")
        connection.exec_driver_sql(
            f"ALTER TABLE public.{room.table} SET WITHOUT CLUSTER")


def upgrade_core(connection: Connection,
                 progress: Optional[Progress] = None) -> UpgradeResult:
    """CKAN's core migrations to head, with the resource-link fix around
    074 when it is pending."""
    legacy = ckan_legacy_version(connection)
    result = UpgradeResult(describe_version(connection), "")
    total = sum(1 for _ in alembic_runner.script_directory()
                .walk_revisions())
    on_step = _timer("core", result.revisions, progress, total)
    if resource_group_fix_needed(connection, legacy):
        save_resource_datasets(connection)
        alembic_runner.upgrade(connection, REMOVE_RESOURCE_GROUPS,
                               legacy=legacy, on_step=on_step)
        restore_resource_datasets(connection, result)
        if progress:
            revisions = (f"{result.resource_revisions_relinked} revisions"
                         if result.resource_revisions_relinked else
                         "not their revisions, which revision 107 drops")
            progress(f"  relinked {result.resources_relinked} resources "
                     f"({revisions}) to their datasets; deleted "
                     f"{result.orphan_resources_deleted} whose dataset is "
                     "gone")
    alembic_runner.upgrade(connection, "head", legacy=legacy, on_step=on_step)
    result.version_after = describe_version(connection)
    return result


# Plugin migrations ------------------------------------------------------

def plugin_version_table(plugin: str) -> str:
    return f"{plugin}_alembic_version"


def _plugin_class_file(plugin: str) -> Optional[str]:
    """The source file of a plugin's class: from the loaded plugin when
    CKAN has loaded it, otherwise from its entry point."""
    try:
        import ckan.plugins as plugins
        instance = plugins.get_plugin(plugin)
    except Exception:  # noqa: BLE001 - not loaded is not an error here
        instance = None
    if instance is not None:
        return pyinspect.getsourcefile(type(instance))
    from importlib.metadata import entry_points
    for entry in entry_points(group="ckan.plugins"):
        if entry.name == plugin:
            try:
                return pyinspect.getsourcefile(entry.load())
            except Exception:  # noqa: BLE001 - an uninstallable plugin
                return None
    return None


def plugin_migration_dir(plugin: str) -> Optional[str]:
    """Where ``ckan db upgrade -p PLUGIN`` finds the plugin's migrations
    (as ckan/cli/db.py ``_resolve_alembic_config``), or None."""
    source = _plugin_class_file(plugin)
    if not source:
        return None
    plugin_dir = os.path.dirname(source)
    marker = plugin_dir.rfind("/ckanext/")
    if marker >= 0:
        cut = plugin_dir.find("/", marker + len("/ckanext/"))
        if cut >= 0:
            plugin_dir = plugin_dir[:cut]
    migration_dir = os.path.join(plugin_dir, "migration", plugin)
    if os.path.isfile(os.path.join(migration_dir, "alembic.ini")):
        return migration_dir
    return None


def plugins_with_migrations(plugins: Iterable[str]) -> dict[str, str]:
    """Enabled plugins that carry alembic migrations -> their scripts."""
    found = {}
    for plugin in plugins:
        directory = plugin_migration_dir(plugin)
        if directory:
            found[plugin] = directory
    return found


def upgrade_plugins(connection: Connection, plugins: Iterable[str],
                    result: UpgradeResult,
                    progress: Optional[Progress] = None) -> None:
    for plugin, scripts in plugins_with_migrations(plugins).items():
        table = plugin_version_table(plugin)
        pending = alembic_runner.pending_revisions(connection, scripts, table)
        if not pending:
            current = alembic_runner.current_revision(connection, table)
            result.plugins[plugin] = (current, current)
            continue
        if progress:
            progress(f"  {plugin}: {len(pending)} pending migration(s)")
        result.plugins[plugin] = alembic_runner.upgrade(
            connection, "head", scripts=scripts, version_table=table,
            on_step=_timer(plugin, result.revisions, progress,
                           len(pending)))


def upgrade(connection: Connection, plugins: Iterable[str] = (),
            progress: Optional[Progress] = None) -> UpgradeResult:
    """Core to head (with the 074 fix), then the enabled plugins'
    migrations; inside the caller's transaction."""
    started = time.monotonic()
    result = upgrade_core(connection, progress)
    upgrade_plugins(connection, plugins, result, progress)
    log.debug("schema upgrade %s -> %s in %.1f s", result.version_before,
             result.version_after, time.monotonic() - started)
    return result
