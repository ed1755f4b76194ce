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
8. the database checks of ``datagovuk verify`` against the manifest
   (:mod:`migrate_verify`), when this run's data migrations ran (not with
   ``--no-verify``): a difference rolls everything back;

then a commit, or a rollback on any error, Ctrl-C or SIGTERM: the database,
ledger included, is then exactly as before.  After the commit,
:func:`migrate_from_config` asks CKAN's API for verify's sample
(:mod:`migrate_verify`).  ``dry_run`` rolls back at the
end; ``skip_upgrade`` stops (and commits) after the data migrations.  It
deliberately does not use CKAN's global engine/session: CKAN's ``env.py``
would open connections of its own.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import exc, inspect, text
from sqlalchemy.engine import Connection

from ckanext.datagovuk import (archive, db, history, migrate_report,
                               migrate_verify, output, preflight, runner,
                               status, traps, upgrade)
from ckanext.datagovuk.verify import manifest
from ckanext.datagovuk.verify import run as verify_run
from ckanext.datagovuk.errors import Interrupted, OperatorError, sigterm_raises

# pg_advisory lock key shared by every `datagovuk migrate` ("dgumigr").
LOCK_KEY = 0x6467756D69677200

Progress = Callable[[str], None]

def next_steps(config_path: Optional[str], verified: bool = False,
               indexed: bool = False) -> list[str]:
    """What to do after a committed migration, with the commands for the
    config at ``config_path``; ``migrate --from`` has already verified the
    move and built its search index unless told otherwise."""
    steps = [] if verified else [
        "check the move against the manifest taken before it: "
        + status.command_line("verify", config_path)]
    steps.append("promote the sysadmins again: "
                 + status.command_line("promote --demoted", config_path)
                 + " (or --configured / NAMES)")
    if not indexed:
        steps.append("rebuild the search index: "
                     + status.command_line("reindex", config_path))
    steps.append("enable the datagovuk plugin and the site's plugins in "
                 "ckan.plugins if they were disabled for the upgrade")
    return steps


# What the operator may need to know after a committed migration (-v).
NOTES = [
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
    # The config the suggested next commands name (None: $CKAN_INI).
    config_path: Optional[str] = None
    # False (--no-verify): no check of the move against the manifest (in
    # place: neither before the commit nor the API sample after it; with
    # --from: none before the swap).
    verify: bool = True
    # Datasets verify's API sample asks for (--verify-sample).
    verify_sample: int = verify_run.DEFAULT_SAMPLE


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
    # `datagovuk verify` of this move (VerifyReport.to_dict(): the database
    # checks before the commit, the API sample after it), or why it was
    # skipped.
    verification: Optional[dict] = None
    verify_skipped: str = ""
    upgrade: Optional[upgrade.UpgradeResult] = None
    room: list[upgrade.RoomMade] = field(default_factory=list)
    analyzed: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    outcome: str = ""
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self, verbose: bool = True) -> str:
        return migrate_report.format_report(self, verbose)


# Counts --------------------------------------------------------------------

def _has(connection: Connection, table: str) -> bool:
    return inspect(connection).has_table(table)


def _scalar(connection: Connection, sql: str) -> int:
    return int(connection.exec_driver_sql(sql).scalar() or 0)


def counts(connection: Connection, site_user: Optional[str] = None
           ) -> dict[str, int]:
    """What an operator checks before and after: works on the 2.2 schema
    and on CKAN 2.12's (extras in package_extra, then package.extras).
    Users and sysadmins are people, as ``status`` and ``promote`` count
    them: not CKAN's pseudo users nor ``site_user``."""
    not_people = [*status.PSEUDO_USERS, *([site_user] if site_user else [])]
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
    found["users (active)"], found["sysadmins"] = connection.execute(text(
        'SELECT count(*), count(*) FILTER (WHERE sysadmin) FROM "user" '
        "WHERE state = 'active' AND name <> ALL(:not_people)"),
        {"not_people": not_people}).one()
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


def email_clashes_now(connection: Connection,
                      found: list[traps.Trap]) -> list[traps.Trap]:
    """``found`` with the email clashes counted as the decision (and the
    error without one) sees them, after the data migrations: before them
    the count includes users the data migrations delete."""
    clashes = len(traps.email_clashes(connection))
    return [dataclasses.replace(trap, found=clashes)
            if trap.name == traps.EMAIL_CLASHES.name else trap
            for trap in found
            if trap.name != traps.EMAIL_CLASHES.name or clashes]


def take_lock(connection: Connection) -> None:
    if not connection.exec_driver_sql(
            f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})").scalar():
        raise OperatorError(
            "another `datagovuk migrate` is running on this database: wait "
            "for it to finish")


class _Steps:
    """Times the steps of the run (as :func:`output.step`) and says which
    one failed."""

    def __init__(self, report: MigrationReport, progress: Progress):
        self.report, self.progress, self.current = report, progress, None

    @contextmanager
    def __call__(self, name: str):
        self.current = name
        with output.step(self.progress, name) as step:
            yield step
        # Three decimals: the benchmark reads these, and a small site's
        # data migration takes under a second.
        self.report.timings.append((name, round(step.seconds, 3)))
        self.current = None


def migrate(url: str, plugins: list[str], settings: dict[str, str],
            options: Optional[MigrationOptions] = None,
            progress: Optional[Progress] = None,
            verify_here: bool = True) -> MigrationReport:
    """Migrate the database at ``url`` for a CKAN with ``plugins`` enabled;
    ``settings`` are the data migrations' GUCs
    (:func:`runner.settings_from_config`).  Raises OperatorError (one line)
    after rolling back on failure.  ``verify_here`` False: the caller
    verifies the move (``migrate --from``, after promoting)."""
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
                     progress, verify_here)
                if options.dry_run:
                    transaction.rollback()
                    report.outcome = "dry run: rolled back, nothing changed"
                else:
                    with steps("commit"):
                        transaction.commit()
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
         progress: Progress, verify_here: bool = True) -> None:
    with steps("pre-flight") as step:
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
        report.counts_before = counts(connection,
                                      settings.get(runner.SITE_USER_GUC))
        report.traps = traps.find_traps(connection, plugins,
                                        options.resolve_email_clash)
        demoted_before = demoted_sysadmins(connection)
        step.result = (f"{report.schema_before}; {len(pending)} data "
                       f"migration(s) pending; {len(report.traps)} upgrade "
                       "trap(s)")
        progress(f"  {report.state}; {step.result}")

    with steps("statistics") as step:
        report.analyzed = analyze_tables_without_statistics(connection)
        step.result = f"{len(report.analyzed)} table(s) analyzed"
        if report.analyzed:
            progress(f"  {len(report.analyzed)} tables had no planner "
                     "statistics (a fresh restore): analyzed them with "
                     f"statistics target {FIRST_STATISTICS_TARGET}")

    if not options.skip_upgrade:
        with steps("room for rewrites") as step:
            report.room = upgrade.make_room_for_rewrites(connection)
            step.result = ", ".join(room.table for room in report.room) \
                or "none needed"
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
        with steps("archive history") as step:
            report.archive = archive.copy_history(
                connection, plugins, archive_dropped=options.archive,
                progress=progress)
            step.result = (f"{len(report.archive.named('copied'))} "
                           f"table(s) copied to {report.archive.schema}")
        _history(connection, report, settings, options, steps, progress)

    with steps("data migrations") as step:
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
        step.result = (f"{len(report.data_migrations)} applied"
                       if options.data_migrations else
                       f"{len(report.skipped_migrations)} skipped") + (
            f", {len(report.demoted)} sysadmin(s) demoted"
            if report.demoted else "")

    if not options.skip_upgrade:
        # Before the fixes: the tables CKAN does not know leave public, the
        # related items are emptied for revision 083.
        with steps("archive") as step:
            report.archive = archive.archive(
                connection, plugins, archive_dropped=options.archive,
                progress=progress, result=report.archive)
            step.result = (f"{len(report.archive.named('moved'))} "
                           f"table(s) moved to {report.archive.schema}")
        with steps("upgrade fixes") as step:
            report.traps = email_clashes_now(connection, report.traps)
            report.fixes = traps.fix_traps(
                connection, plugins, options.resolve_email_clash, progress)
            step.result = f"{len(report.fixes)} fix(es)"
        with steps("schema upgrade") as step:
            report.upgrade = upgrade.upgrade(connection, plugins, progress)
            upgrade.reset_room(connection, report.room)
            if report.upgrade.revisions and report.history:
                report.history.timestamps_restored = \
                    history.restore_timestamps(connection)
            step.result = (f"{len(report.upgrade.revisions)} revision(s), "
                           f"now {report.upgrade.version_after}")
    if verify_here:
        migrate_verify.before_commit(connection, report, pending, steps,
                                     progress)
    report.schema_after = upgrade.describe_version(connection)
    report.counts_after = counts(connection,
                                 settings.get(runner.SITE_USER_GUC))
    report.next_steps = next_steps(options.config_path)
    report.notes = list(NOTES)
    if report.room:
        report.notes.append(
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


def migrate_from_config(options: MigrationOptions,
                        progress: Optional[Progress] = None,
                        config=None, request_context: Optional[Callable] = None
                        ) -> MigrationReport:
    """:func:`migrate` with the URL, plugins and settings of CKAN's config;
    then, when the move was verified and committed, the API sample (in
    ``request_context()``: CKAN's actions need a request)."""
    if config is None:
        from ckan.common import config
    url = config.get("sqlalchemy.url")
    if not url:
        raise OperatorError("the CKAN config has no sqlalchemy.url")
    plugins = config.get("ckan.plugins") or []
    if isinstance(plugins, str):
        plugins = plugins.split()
    report = migrate(url, list(plugins), runner.settings_from_config(config),
                     options, progress)
    if report.verification and report.outcome == "committed" and \
            migrate_verify.api_sample_after_commit(
                url, report, progress or (lambda line: None),
                request_context):
        kept = next_steps(options.config_path, verified=True)
        report.next_steps = [line for line in report.next_steps
                             if line in kept]
    return report
