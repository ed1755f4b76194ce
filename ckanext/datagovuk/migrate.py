"""``datagovuk migrate``: the old site's database, made one CKAN 2.12 runs on.

One connection, one transaction, in this order:

1. an advisory lock (a second ``migrate`` on the same database refuses);
2. pre-flight (:mod:`preflight`): what the database is, refusals, the traps;
   then a coarse ANALYZE of the tables without planner statistics;
3. unless ``skip_upgrade``: room for the whole-table rewrites to come
   (:func:`upgrade.make_room_for_rewrites`);
4. the archive's copy (:func:`archive.copy_history`): the tables CKAN's
   upgrade drops and the tags copied to ``datagovuk_legacy`` as they are
   before anything changes (also with ``skip_upgrade`` when data
   migrations are pending); then, while the revision tables are there,
   the history (:mod:`history`): each dataset's revisions as CKAN 2.12
   activities (not with ``history=False``) and the activity -> revision
   mapping archived.
   Just before the copy, the manifest (:mod:`verify.manifest`): what
   ``datagovuk verify`` checks the migrated database against.
5. the pending data migrations (:mod:`runner`, ``migrations/NNN_*.sql``);
   then the rest of the archive (:mod:`archive`): unknown tables moved to
   ``datagovuk_legacy``, the related items emptied;
6. the fixes for the traps of CKAN's upgrade (:mod:`traps`);
7. CKAN's core upgrade with the resource-link fix, then the enabled plugins'
   migrations (:mod:`upgrade`); the converted activities' timestamps put
   back where CKAN's 085 moved them;

then a commit, or a rollback on any error, Ctrl-C or SIGTERM: the database,
ledger included, is then exactly as before.  ``dry_run`` rolls back at the
end; ``skip_upgrade`` stops (and commits) after the data migrations.  It
deliberately does not use CKAN's global engine/session: CKAN's ``env.py``
would open connections of its own.
"""
from __future__ import annotations

import dataclasses
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import exc, inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import (archive, db, history, preflight, runner,
                               traps, upgrade)
from ckanext.datagovuk.verify import manifest
from ckanext.datagovuk.errors import Interrupted, OperatorError, sigterm_raises

# pg_advisory lock key shared by every `datagovuk migrate` ("dgumigr").
LOCK_KEY = 0x6467756D69677200

Progress = Callable[[str], None]

# migrate --from leaves it out once it has built the index itself.
REINDEX_STEP = "rebuild the search index: ckan -c CKAN_INI datagovuk reindex"
NEXT_STEPS = [
    "check the move against the manifest taken before it: ckan -c CKAN_INI "
    "datagovuk verify",
    "promote the sysadmins again: ckan -c CKAN_INI datagovuk promote "
    "--demoted (or --configured / NAMES)",
    REINDEX_STEP,
    "enable the datagovuk plugin and the site's plugins in ckan.plugins if "
    "they were disabled for the upgrade",
    "never moved by this command: the datastore database, the uploaded "
    "files under ckan.storage_path, the Solr index",
    "the archived tables are in the schema datagovuk_legacy (drop it with "
    "DROP SCHEMA datagovuk_legacy CASCADE once nobody needs them)",
]


@dataclass
class MigrationOptions:
    dry_run: bool = False
    skip_upgrade: bool = False
    archive: bool = True
    migrations_dir: Optional[str] = None
    resolve_email_clash: str = "stop"
    # False (--no-data-migrations): the pending data migrations are
    # recorded as skipped, not run; any legacy CKAN can then be upgraded.
    data_migrations: bool = True
    # False (--no-history): the old revisions are not turned into
    # activities (the activity -> revision mapping is still archived).
    history: bool = True


@dataclass
class MigrationReport:
    database: str
    options: MigrationOptions
    state: str = ""
    schema_before: str = ""
    schema_after: str = ""
    counts_before: dict[str, int] = field(default_factory=dict)
    counts_after: dict[str, int] = field(default_factory=dict)
    data_migrations: list[runner.AppliedMigration] = field(
        default_factory=list)
    skipped_migrations: list[str] = field(default_factory=list)
    demoted: list[tuple[str, str]] = field(default_factory=list)
    traps: list[traps.Trap] = field(default_factory=list)
    fixes: list[traps.AppliedFix] = field(default_factory=list)
    archive: Optional[archive.ArchiveResult] = None
    history: Optional[history.HistoryResult] = None
    # Whether this run recorded the manifest `datagovuk verify` reads.
    manifest: bool = False
    upgrade: Optional[upgrade.UpgradeResult] = None
    room: list[upgrade.RoomMade] = field(default_factory=list)
    analyzed: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    outcome: str = ""
    next_steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return format_report(self)


# Counts --------------------------------------------------------------------

def _has(connection: Connection, table: str) -> bool:
    return inspect(connection).has_table(table)


def _scalar(connection: Connection, sql: str) -> int:
    return int(connection.exec_driver_sql(sql).scalar() or 0)


def counts(connection: Connection) -> dict[str, int]:
    """What an operator checks before and after: works on the 2.2 schema
    and on CKAN 2.12's (extras in package_extra, then package.extras)."""
    if not (_has(connection, "package") and _has(connection, "user")):
        return {}
    found = {}
    datasets = connection.exec_driver_sql(
        "SELECT count(*) FILTER (WHERE state = 'active'), "
        "count(*) FILTER (WHERE state = 'deleted') FROM package "
        "WHERE coalesce(type, 'dataset') = 'dataset'").one()
    found["datasets (active)"], found["datasets (deleted)"] = datasets
    found["resources (active)"] = _scalar(
        connection, "SELECT count(*) FROM resource WHERE state = 'active'")
    found["organisations (active)"] = _scalar(
        connection, 'SELECT count(*) FROM "group" WHERE is_organization '
        "AND state = 'active'")
    found["users (active)"] = _scalar(
        connection, 'SELECT count(*) FROM "user" WHERE state = \'active\'')
    found["sysadmins"] = _scalar(
        connection, 'SELECT count(*) FROM "user" WHERE sysadmin '
        "AND state = 'active'")
    found["tags"] = _scalar(connection, "SELECT count(*) FROM tag") \
        if _has(connection, "tag") else 0
    if _has(connection, "package_extra"):
        found["dataset extras"] = _scalar(
            connection, "SELECT count(*) FROM package_extra "
            "WHERE state = 'active'")
    else:
        found["dataset extras"] = _scalar(
            connection, "SELECT count(*) FROM package p, "
            "jsonb_object_keys(p.extras) WHERE p.extras IS NOT NULL")
    if _has(connection, "harvest_source"):
        found["harvest sources"] = _scalar(
            connection, "SELECT count(*) FROM harvest_source")
    return found


def demoted_sysadmins(connection: Connection) -> dict[str, str]:
    exists = connection.exec_driver_sql(
        "SELECT to_regclass('datagovuk.demoted_sysadmins') IS NOT NULL"
    ).scalar()
    if not exists:
        return {}
    return dict(connection.exec_driver_sql(
        "SELECT user_id, user_name FROM datagovuk.demoted_sysadmins "
        "ORDER BY user_name").all())


# The run ---------------------------------------------------------------------

# A restored database has no planner statistics until autovacuum gets to
# it, and without them the planner turns CKAN's revision 084 (a correlated
# subquery per dataset) into a scan of a whole index per dataset.  A coarse
# ANALYZE (as the first stage of vacuumdb --analyze-in-stages) is enough to
# avoid that, and cheap; autovacuum refines the statistics later
# (docs/benchmark.rst, "Measurements behind the code").
FIRST_STATISTICS_TARGET = 10


def analyze_tables_without_statistics(connection: Connection) -> list[str]:
    """ANALYZE (coarsely) the tables in ``public`` that have no statistics;
    transactional like the rest of the run."""
    tables = [name for (name,) in connection.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
        "AND c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_stats s "
        "WHERE s.schemaname = 'public' AND s.tablename = c.relname) "
        "AND pg_relation_size(c.oid) > 0 ORDER BY 1")]
    if tables:
        connection.exec_driver_sql(
            f"SET LOCAL default_statistics_target = {FIRST_STATISTICS_TARGET}")
        connection.exec_driver_sql("ANALYZE " + ", ".join(
            f"public.{db.quote_identifier(name)}" for name in tables))
        connection.exec_driver_sql("RESET default_statistics_target")
    return tables


def take_lock(connection: Connection) -> None:
    if not connection.exec_driver_sql(
            f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})").scalar():
        raise OperatorError(
            "another `datagovuk migrate` is running on this database: wait "
            "for it to finish")


class _Steps:
    """Times the steps of the run and says which one failed."""

    def __init__(self, report: MigrationReport, progress: Progress):
        self.report, self.progress, self.current = report, progress, None

    @contextmanager
    def __call__(self, name: str):
        self.current = name
        self.progress(f"{name} ...")
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self.report.timings.append((name, round(seconds, 3)))
        # Two decimals: the benchmark reads these, and a small site's data
        # migration takes under a second.
        self.progress(f"{name}: done in {seconds:.2f} s")
        self.current = None


def migrate(url: str, plugins: list[str], settings: dict[str, str],
            options: Optional[MigrationOptions] = None,
            progress: Optional[Progress] = None) -> MigrationReport:
    """Migrate the database at ``url`` for a CKAN with ``plugins`` enabled;
    ``settings`` are the data migrations' GUCs
    (:func:`runner.settings_from_config`).  Raises OperatorError (one line)
    after rolling back on failure."""
    options = options or MigrationOptions()
    progress = progress or (lambda message: None)
    report = MigrationReport(db.safe_url(url), options)
    steps = _Steps(report, progress)
    engine, connection = db.engine_connection(url)
    try:
        with sigterm_raises():
            transaction = connection.begin()
            try:
                _run(connection, report, plugins, settings, options, steps,
                     progress)
                if options.dry_run:
                    transaction.rollback()
                    report.outcome = "dry run: rolled back, nothing changed"
                else:
                    steps.current = "commit"
                    started = time.monotonic()
                    transaction.commit()
                    report.timings.append(
                        ("commit", round(time.monotonic() - started, 3)))
                    report.outcome = "committed"
            except BaseException as error:
                try:
                    transaction.rollback()
                except exc.DBAPIError:
                    # The connection is gone (a server restart): PostgreSQL
                    # has already rolled the transaction back.
                    connection.invalidate()
                raise _as_operator_error(error, steps.current) from error
    finally:
        connection.close()
        engine.dispose()
    progress(report.outcome)
    return report


def _as_operator_error(error: BaseException, step: Optional[str]):
    where = f" during {step}" if step else ""
    after = "; rolled back, the database is as it was"
    if step in (None, "pre-flight"):
        after = ""
    if isinstance(error, traps.EmailClashError):
        return error
    if isinstance(error, OperatorError):
        return OperatorError(f"{error}{after}")
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        reason = str(error) or "interrupted"
        return OperatorError(f"{reason}{where}{after}")
    if isinstance(error, exc.DBAPIError):
        return OperatorError(
            f"{step or 'migration'} failed: {db.first_line(error.orig)}"
            f"{after}")
    return OperatorError(f"{step or 'migration'} failed: "
                         f"{type(error).__name__}: {db.first_line(error)}"
                         f"{after}")


def _run(connection: Connection, report: MigrationReport,
         plugins: list[str], settings: dict[str, str],
         options: MigrationOptions, steps: _Steps,
         progress: Progress) -> None:
    with steps("pre-flight"):
        take_lock(connection)
        # JIT compiling the big one-off statements costs more than it
        # saves (docs/benchmark.rst, "Measurements behind the code").
        connection.exec_driver_sql("SET LOCAL jit = off")
        files = runner.discover(options.migrations_dir)
        pending = [migration.name
                   for migration in runner.pending(connection, files)]
        state = preflight.check(connection, pending, report.database,
                                options.data_migrations)
        report.state = state.describe()
        report.schema_before = upgrade.describe_version(connection)
        report.counts_before = counts(connection)
        report.traps = traps.find_traps(connection, plugins,
                                        options.resolve_email_clash)
        demoted_before = demoted_sysadmins(connection)
        progress(f"  {report.state}; {len(pending)} data migration(s) "
                 f"pending; {len(report.traps)} upgrade trap(s) found")

    with steps("statistics"):
        report.analyzed = analyze_tables_without_statistics(connection)
        if report.analyzed:
            progress(f"  {len(report.analyzed)} tables had no planner "
                     "statistics (a fresh restore): analyzed them with "
                     f"statistics target {FIRST_STATISTICS_TARGET}")

    if not options.skip_upgrade:
        with steps("room for rewrites"):
            report.room = upgrade.make_room_for_rewrites(connection)
            for room in report.room:
                progress(f"  {room.table}: rewritten with fillfactor "
                         f"{room.fillfactor} ({room.bytes_before >> 20} MB -> "
                         f"{room.bytes_after >> 20} MB) so that whole-table "
                         "updates leave its indexes alone")

    if pending or not options.skip_upgrade:
        # First, before anything changes: the archive must hold what the
        # upgrade drops and the tags as they were, not as the data
        # migrations leave them (they delete tags, extras with their
        # history, users with their old authorization rows).
        with steps("manifest"):
            report.manifest = manifest.take(
                connection, settings, pending, archive.history_to_copy(
                    connection, plugins, options.archive), options.archive)
        with steps("archive history"):
            report.archive = archive.copy_history(
                connection, plugins, archive_dropped=options.archive,
                progress=progress)
        _history(connection, report, settings, options, steps, progress)

    with steps("data migrations"):
        if options.data_migrations:
            report.data_migrations = runner.apply_pending(
                connection, options.migrations_dir, settings,
                progress=lambda message: progress(f"  {message}"))
        else:
            report.skipped_migrations = runner.skip_pending(
                connection, options.migrations_dir)
        demoted_after = demoted_sysadmins(connection)
        report.demoted = sorted(
            (name, user_id) for user_id, name in demoted_after.items()
            if user_id not in demoted_before)
        if report.history and not report.history.skipped:
            history.map_actors(connection, report.history)

    if not options.skip_upgrade:
        # Before the fixes: the tables CKAN does not know leave public, the
        # related items are emptied for revision 083.
        with steps("archive"):
            report.archive = archive.archive(
                connection, plugins, archive_dropped=options.archive,
                progress=progress, result=report.archive)
        with steps("upgrade fixes"):
            report.fixes = traps.fix_traps(
                connection, plugins, options.resolve_email_clash, progress)
        with steps("schema upgrade"):
            report.upgrade = upgrade.upgrade(connection, plugins, progress)
            upgrade.reset_room(connection, report.room)
            if report.upgrade.revisions and report.history:
                report.history.timestamps_restored = \
                    history.restore_timestamps(connection)
    report.schema_after = upgrade.describe_version(connection)
    report.counts_after = counts(connection)
    report.next_steps = list(NEXT_STEPS)
    if report.room:
        report.next_steps.append(
            "optional: " + ", ".join(room.table for room in report.room)
            + " keep the free space left for the upgrade's rewrites until "
            "VACUUM FULL " + ", ".join(room.table for room in report.room)
            + " (which locks them while it runs)")
    if options.skip_upgrade:
        report.next_steps.insert(
            0, "run `datagovuk migrate` again without --skip-upgrade to "
            "upgrade the schema")


def _history(connection: Connection, report: MigrationReport,
             settings: dict[str, str], options: MigrationOptions,
             steps: _Steps, progress: Progress) -> None:
    """The old revisions as activities (unless --no-history), and the
    activity -> revision mapping archived, while the revision tables and
    activity.revision_id are still there."""
    if not history.has_revisions(connection):
        return
    with steps("history"):
        if options.history:
            report.history = history.rebuild(connection, settings, progress)
        else:
            report.history = history.HistoryResult(
                skipped="--no-history: no revision turned into an activity")
        if options.archive:
            history.archive_mapping(connection, report.history,
                                    converted=options.history)


# The report ----------------------------------------------------------------

def format_report(report: MigrationReport) -> str:
    lines = [f"Migration of {report.database}: {report.outcome}",
             f"  database: {report.state}",
             f"  schema version: {report.schema_before} -> "
             f"{report.schema_after}"]
    if report.counts_before or report.counts_after:
        lines.append("Counts (before -> after):")
        for name in dict.fromkeys([*report.counts_before,
                                   *report.counts_after]):
            before = report.counts_before.get(name, "-")
            after = report.counts_after.get(name, "-")
            lines.append(f"  {name:<24} {before!s:>8} -> {after!s:>8}")
    if report.skipped_migrations:
        lines.append("Data migrations: none run (--no-data-migrations); "
                     "recorded as skipped: "
                     + ", ".join(report.skipped_migrations))
    else:
        lines.append("Data migrations:" if report.data_migrations
                     else "Data migrations: nothing to apply")
    for applied in report.data_migrations:
        lines.append(f"  {applied.name} ({applied.duration_seconds:.1f} s)")
        lines.extend(f"    {step}" for step in applied.steps)
    if report.demoted:
        lines.append(f"Demoted sysadmins ({len(report.demoted)}; promote "
                     "them again with `datagovuk promote --demoted`):")
        lines.append("  " + ", ".join(name for name, _ in report.demoted))
    if report.traps:
        lines.append("Upgrade traps found before the data migrations:")
        lines.extend(f"  {trap}" for trap in report.traps)
    if report.fixes:
        lines.append("Fixes applied:")
        lines.extend(f"  {fix}" for fix in report.fixes)
    if report.upgrade:
        result = report.upgrade
        if result.resources_relinked or result.orphan_resources_deleted:
            revisions = (result.resource_revisions_relinked
                         or "none, revision 107 drops them")
            lines.append(
                f"  resources relinked to their datasets across CKAN 074: "
                f"{result.resources_relinked} (revisions: {revisions}"
                "); deleted as their "
                f"dataset is gone: {result.orphan_resources_deleted} "
                f"(revisions: {result.orphan_resource_revisions_deleted})")
    archived = report.archive
    if archived and (archived.tables or archived.migrate_version_rows):
        lines.append(f"Archived in schema {archived.schema}:")
        for table in archived.tables:
            lines.append(f"  {table.how} {table.name} ({table.rows} rows): "
                         f"{table.reason}")
        if archived.migrate_version_rows:
            lines.append(f"  moved {archived.migrate_version_rows} other "
                         "extensions' row(s) of migrate_version to "
                         f"{archived.schema}.migrate_version")
    elif not report.options.skip_upgrade:
        lines.append("Archived: nothing" + (
            " (--no-archive: tables CKAN's upgrade drops were not copied)"
            if not report.options.archive else ""))
    lines.extend(_history_lines(report.history))
    if report.upgrade:
        result = report.upgrade
        legacy = re.match(r"legacy (\d+)$", report.schema_before)
        noop = (f" (those up to legacy {legacy.group(1)} only recorded)"
                if legacy else "")
        lines.append(f"Schema upgrade: {len(result.revisions)} revision(s)"
                     f"{noop} in {result.seconds:.1f} s")
        slowest = sorted(result.revisions, key=lambda step: -step.seconds)[:5]
        for step in slowest:
            if step.seconds >= 0.05:
                lines.append(f"  {step.source} {step.revision} "
                             f"{step.doc.splitlines()[0] if step.doc else ''}"
                             f": {step.seconds:.1f} s")
        for plugin, (before, after) in result.plugins.items():
            lines.append(f"  plugin {plugin}: {before or 'none'} -> {after}")
    lines.append("Time per step:")
    lines.extend(f"  {name}: {seconds:.1f} s" for name, seconds
                 in report.timings)
    if report.next_steps and report.outcome == "committed":
        lines.append("Next steps:")
        lines.extend(f"  - {step}" for step in report.next_steps)
    return "\n".join(lines)


def _history_lines(result: Optional[history.HistoryResult]) -> list[str]:
    if result is None:
        return []
    if result.skipped:
        lines = [f"History: {result.skipped}"]
    else:
        lines = [f"History: {result.revisions} revisions of {result.datasets} "
                 f"datasets as activities in {result.seconds:.1f} s: "
                 f"{result.completed} of CKAN 2.2's activities completed, "
                 f"{result.added} added, {sum(result.left.values())} left"]
        lines.extend(f"  left {count}: {reason}"
                     for reason, count in result.left.items())
        lines.append(f"  actors: {result.actors_deleted} activities of "
                     "deleted users moved to the site user (old name kept), "
                     f"{result.actors_renamed} of renamed users renamed")
        if result.actors_unmapped:
            lines.append(f"  left {result.actors_unmapped} activities of "
                         "deleted users pointing at them: no user is named "
                         "as the new site (ckan.site_id) yet")
    if result.mapping_archived:
        lines.append(f"  activity -> revision mapping of "
                     f"{result.mapping_archived} activities archived in "
                     "datagovuk_legacy.activity_revision")
    return lines


def migrate_from_config(options: MigrationOptions,
                        progress: Optional[Progress] = None,
                        config=None) -> MigrationReport:
    """:func:`migrate` with the URL, plugins and settings of CKAN's config."""
    if config is None:
        from ckan.common import config
    url = config.get("sqlalchemy.url")
    if not url:
        raise OperatorError("the CKAN config has no sqlalchemy.url")
    plugins = config.get("ckan.plugins") or []
    if isinstance(plugins, str):
        plugins = plugins.split()
    return migrate(url, list(plugins), runner.settings_from_config(config),
                   options, progress)
