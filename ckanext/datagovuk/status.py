"""Where a database stands in the move from the old site: its schema
version, the data migrations applied and pending, the sysadmins still to be
promoted, a few counts, the search index's count of datasets next to the
database's, and the next command to run.

Everything is read with plain SQL in a read-only transaction: before the
migration the database does not match CKAN's model, so the ORM cannot be
used, and asking for the status must never change anything.  The SQL only
touches columns that CKAN 2.2 and 2.12 share (``user.state``,
``user.sysadmin``, ``package.type``, ``group.is_organization``, ...).
"""
from __future__ import annotations

import inspect as pyinspect
import os
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

import ckan.migration

from ckanext.datagovuk import legacy, preflight, runner, traps
from ckanext.datagovuk.errors import OperatorError

CORE_SCRIPTS = os.path.dirname(ckan.migration.__file__)
LEDGER_SCHEMA = "datagovuk"
# Users CKAN itself creates; they are not people and are not counted.
PSEUDO_USERS = ("logged_in", "visitor")

# The steps status recommends -> the arguments of ``ckan -c CONFIG``.
# SOURCE stands for the old site (as `datagovuk import --help` describes).
NO_DATA_MIGRATIONS = "migrate " + preflight.NO_DATA_MIGRATIONS_OPTION
NEXT_COMMANDS = {
    "import": ["datagovuk", "import", "SOURCE"],
    "migrate": ["datagovuk", "migrate"],
    NO_DATA_MIGRATIONS: ["datagovuk", "migrate",
                         preflight.NO_DATA_MIGRATIONS_OPTION],
    "promote --demoted": ["datagovuk", "promote", "--demoted"],
    "reindex": ["datagovuk", "reindex"],
    "verify": ["datagovuk", "verify"],
}


def command_line(step: Optional[str], config_path: Optional[str],
                 *extra: str) -> Optional[str]:
    """The whole command line of ``step`` with the config in use (None:
    no command; no config known: CKAN's own default, ``$CKAN_INI``)."""
    if step is None:
        return None
    config = ["-c", config_path] if config_path else []
    return shlex.join(["ckan", *config, *NEXT_COMMANDS[step], *extra])


# --- data migration files --------------------------------------------------

def migration_files(directory: str | None = None) -> list[dict]:
    """The data migration files, in order, as ``{"file", "checksum"}``; the
    runner decides what a migration file is."""
    return [{"file": migration.name, "checksum": migration.checksum}
            for migration in runner.discover(directory)]


# --- schema version --------------------------------------------------------

def _tables(connection: Connection, schema: str) -> set[str]:
    return set(connection.execute(text(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = :schema"), {"schema": schema}).scalars())


def _any_tables(connection: Connection) -> bool:
    return connection.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE "
        "table_schema NOT IN ('pg_catalog', 'information_schema') "
        "AND table_schema NOT LIKE 'pg_toast%%' "
        "AND table_schema NOT LIKE 'pg_temp%%')").scalar()


def _revision_ordinal(script: ScriptDirectory, revision: str) -> Optional[int]:
    """CKAN numbers its revision files (``109_9445ce34fc23_...``)."""
    try:
        found = script.get_revision(revision)
    except Exception:
        return None
    prefix = os.path.basename(found.path).split("_", 1)[0] if found else ""
    return int(prefix) if prefix.isdigit() else None


def _pending_count(script: ScriptDirectory, current: Iterable[str]) -> int:
    current = tuple(current)
    if set(current) == set(script.get_heads()):
        return 0
    lower = current if current else "base"
    if len(current) == 1:
        lower = current[0]
    return len(list(script.iterate_revisions("heads", lower)))


def plugin_migration_dirs(plugins: Iterable[str]) -> dict[str, str]:
    """Enabled plugins that ship alembic migrations, and their script
    folders (found the way ``ckan.cli.db._resolve_alembic_config`` does)."""
    import ckan.plugins as p

    found = {}
    for name in plugins:
        try:
            plugin = p.get_plugin(name)
        except Exception:
            plugin = None
        if plugin is None:
            continue
        source = pyinspect.getsourcefile(type(plugin))
        if not source:
            continue
        plugin_dir = os.path.dirname(source)
        start = plugin_dir.rfind("/ckanext/") + len("/ckanext/")
        end = plugin_dir.find("/", start)
        if end != -1:
            plugin_dir = plugin_dir[:end]
        scripts = os.path.join(plugin_dir, "migration", name)
        if os.path.isfile(os.path.join(scripts, "alembic.ini")):
            found[name] = scripts
    return found


def _plugin_pending(connection: Connection, plugins: Iterable[str]) -> dict[str, int]:
    pending = {}
    for name, scripts in sorted(plugin_migration_dirs(plugins).items()):
        script = ScriptDirectory.from_config(_alembic_config(scripts))
        # CKAN's plugin env.py names the version table after the folder.
        version_table = f"{os.path.basename(scripts)}_alembic_version"
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table})
        count = _pending_count(script, context.get_current_heads())
        if count:
            pending[name] = count
    return pending


def _alembic_config(scripts: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", scripts)
    return config


def database_state(connection: Connection,
                   plugins: Iterable[str] = ()) -> dict:
    """The schema's kind and version, and what CKAN still has to migrate."""
    public = _tables(connection, "public")
    script = ScriptDirectory.from_config(_alembic_config(CORE_SCRIPTS))
    head = script.get_current_head()
    state: dict[str, Any] = {
        "kind": None, "is_ckan": False, "legacy_version": None,
        "alembic_revision": None, "revision_number": None,
        "head": head, "head_number": _revision_ordinal(script, head),
        "at_head": False, "pending_core_migrations": None,
        "pending_core_count": None, "pending_plugin_migrations": {},
        # Why CKAN's legacy version cannot be read (legacy.py), if it can't.
        "legacy_version_problem": None,
    }
    has_ckan_tables = {"user", "package"} <= public
    if "migrate_version" in public and has_ckan_tables:
        try:
            version = legacy.ckan_legacy_version(connection)
        except OperatorError as error:
            version, state["legacy_version_problem"] = None, str(error)
        if version is None and not state["legacy_version_problem"]:
            state["legacy_version_problem"] = (
                "CKAN's row of migrate_version holds no version: the legacy "
                "schema version is unknown")
        # Every revision numbered at or below the legacy version is a no-op.
        remaining = [rev for rev in script.walk_revisions()
                     if (_revision_ordinal(script, rev.revision) or 0)
                     > (version or 0)]
        # No version: what is pending cannot be told.
        known = version is not None
        state.update(kind="legacy", is_ckan=True, legacy_version=version,
                     pending_core_migrations=True if known else None,
                     pending_core_count=len(remaining) if known else None)
    elif "alembic_version" in public and has_ckan_tables:
        current = MigrationContext.configure(connection).get_current_heads()
        revision = current[0] if len(current) == 1 else ",".join(current)
        count = _pending_count(script, current)
        state.update(kind="alembic", is_ckan=True, alembic_revision=revision,
                     revision_number=_revision_ordinal(script, revision),
                     at_head=count == 0, pending_core_migrations=count > 0,
                     pending_core_count=count)
    else:
        # Empty as `import` counts it: no table in any schema (tables
        # elsewhere than public make it refuse without --replace too).
        state["kind"] = ("empty" if not public and not _any_tables(connection)
                         else "not-ckan")
        return state
    if state["kind"] == "alembic":
        state["pending_plugin_migrations"] = _plugin_pending(connection, plugins)
    else:
        # A legacy schema has none of the plugins' tables yet: all pending.
        state["pending_plugin_migrations"] = {
            name: len(list(ScriptDirectory.from_config(
                _alembic_config(scripts)).walk_revisions()))
            for name, scripts in sorted(plugin_migration_dirs(plugins).items())}
    return state


# --- ledger ----------------------------------------------------------------

def applied_migrations(connection: Connection) -> list[dict]:
    return [{"file": entry.name, "checksum": entry.checksum,
             "applied_at": entry.applied_at.isoformat(),
             "duration_seconds": entry.duration_seconds,
             "skipped": entry.skipped}
            for entry in runner.applied(connection).values()]


def demoted_not_promoted(connection: Connection) -> Optional[list[dict]]:
    """Demoted sysadmins who still exist and are not sysadmins again: what
    ``promote --demoted`` would promote.  None when no demotion was ever
    recorded (the ledger table does not exist)."""
    if "demoted_sysadmins" not in _tables(connection, LEDGER_SCHEMA):
        return None
    rows = connection.execute(text(
        'SELECT d.user_id, u.name, d.user_name, d.demoted_at '
        'FROM datagovuk.demoted_sysadmins d JOIN "user" u ON u.id = d.user_id '
        "WHERE u.state <> 'deleted' AND NOT coalesce(u.sysadmin, false) "
        "ORDER BY u.name")).mappings()
    return [{"id": row["user_id"], "name": row["name"],
             "demoted_at": row["demoted_at"].isoformat()} for row in rows]


def counts(connection: Connection, site_user: str | None = None) -> dict:
    not_people = [*PSEUDO_USERS, *([site_user] if site_user else [])]
    row = connection.execute(text(
        "SELECT "
        " (SELECT count(*) FROM package WHERE state = 'active'"
        "   AND coalesce(type, 'dataset') = 'dataset') AS datasets,"
        ' (SELECT count(*) FROM "group" WHERE state = \'active\''
        "   AND is_organization) AS organisations,"
        ' (SELECT count(*) FROM "user" WHERE state = \'active\''
        "   AND name <> ALL(:not_people)) AS users,"
        ' (SELECT count(*) FROM "user" WHERE state = \'active\''
        "   AND sysadmin AND name <> ALL(:not_people)) AS sysadmins"),
        {"not_people": not_people}).mappings().one()
    return dict(row)


# --- the whole picture -----------------------------------------------------

@dataclass
class NextStep:
    step: Optional[str]    # a key of NEXT_COMMANDS; None: explained
    reason: str


def search_index_state(connection: Connection, site_id: str | None) -> dict:
    """How many of this site's datasets the live Solr core holds, next to
    how many CKAN indexes (``problem``: why the core could not be read)."""
    from ckan.common import config

    from ckanext.datagovuk.search.solr import SolrCores, site_query

    kept = ("state <> 'deleted'"
            if config.get("ckan.search.remove_deleted_packages") else "true")
    # CKAN 2.12's indexer fails on a dataset with a relationship (its show
    # schema drops the ids index_package reads): rebuild and reindex leave
    # them out, so they are not missing from a complete index.
    unindexable = (f"SELECT count(*) FROM package p WHERE {kept} AND EXISTS "
                   "(SELECT 1 FROM package_relationship r WHERE p.id IN "
                   "(r.subject_package_id, r.object_package_id))")
    state = {"datasets": connection.execute(text(
                 f"SELECT count(*) FROM package WHERE {kept}")).scalar(),
             "unindexable": connection.execute(text(unindexable)).scalar(),
             "indexed": None, "problem": None}
    try:
        cores = SolrCores.from_config(config)
        state["indexed"] = cores.count(cores.live, site_query(site_id))
    except OperatorError as error:
        state["problem"] = str(error)
    return state


def search_step(search: dict) -> NextStep:
    if search["problem"]:
        return NextStep("reindex", "the database is migrated; its search "
                        f"index cannot be read ({search['problem']})")
    indexable = search["datasets"] - search.get("unindexable", 0)
    if search["indexed"] != indexable:
        return NextStep("reindex", (
            f"the search index holds {search['indexed']} datasets, the "
            f"database {search['datasets']}"))
    return NextStep(None, "the database is migrated and the search index "
                    f"holds its {indexable} datasets" + (
                        f" ({search['unindexable']} with a relationship, "
                        "which CKAN's indexer cannot index)"
                        if search.get("unindexable") else ""))


def next_step(connection: Connection, database: dict, data: dict,
              demoted: Optional[list[dict]],
              config_path: Optional[str],
              search: Optional[dict] = None) -> NextStep:
    """The next command to run, and why; or, for a state no command of
    ours can move on from, why not (the step is then None)."""
    if database["kind"] == "empty":
        return NextStep("import", "this database holds no CKAN site yet")
    if not database["is_ckan"]:
        return NextStep(None, (
            "this database holds tables but not a CKAN site: check that "
            "sqlalchemy.url names the site's database; to load the old site "
            "in its place: "
            f"{command_line('import', config_path, '--replace')} (the "
            "current database is kept under a backup name)"))
    if database["kind"] == "legacy" and database["legacy_version"] is None:
        return NextStep(None, database["legacy_version_problem"])
    if data["changed"]:
        names = ", ".join(data["changed"])
        return NextStep(None, (
            f"applied data migrations changed since: {names}; migrate "
            "refuses until the applied version is restored"))
    if data["pending"]:
        return migrate_step(connection, data, config_path,
                            "data migrations not applied: "
                            + ", ".join(data["pending"]))
    if database["pending_core_migrations"]:
        return migrate_step(connection, data, config_path,
                            "CKAN's schema upgrade has not run")
    if database["pending_plugin_migrations"]:
        names = ", ".join(database["pending_plugin_migrations"])
        return migrate_step(connection, data, config_path,
                            f"plugin migrations pending: {names}")
    if demoted:
        return NextStep("promote --demoted",
                        f"{len(demoted)} demoted sysadmin(s) not promoted yet")
    return search_step(search or search_index_state(connection, None))


def migrate_step(connection: Connection, data: dict,
                 config_path: Optional[str], why: str) -> NextStep:
    """``migrate``, with ``--no-data-migrations`` where the data
    migrations cannot apply, as long as pre-flight would let it run and no
    decision is needed first."""
    state = preflight.classify(connection)
    step = NO_DATA_MIGRATIONS if data["applicable"] is False else "migrate"
    try:
        preflight.check(connection, data["pending"],
                        data_migrations=step == "migrate")
    except OperatorError as error:
        return NextStep(None, f"migrate would refuse: {error}")
    clash = traps.email_clash_trap(connection)
    if clash:
        return NextStep(None, (
            f"{clash.found} email address(es) are shared, ignoring case, by "
            "active users (before the data migrations, some may be users "
            "they delete), which CKAN 2.12 forbids; a person decides which "
            "account keeps each: fix the accounts, or run "
            f"{command_line(step, config_path, '--resolve-email-clash', 'keep-oldest')}"
            " (the oldest account keeps the address)"))
    if step == NO_DATA_MIGRATIONS:
        why += (f"; they need CKAN 2.2's tables, which this {state.describe()} "
                "lacks: the upgrade runs without them and records them as "
                "skipped")
    return NextStep(step, why)


def data_migrations_applicable(connection: Connection, database: dict,
                               pending: list[str]) -> Optional[bool]:
    """Whether the pending data migrations can run here (None: nothing
    pending, or not a CKAN database)."""
    if not pending or not database["is_ckan"] or \
            database["legacy_version_problem"]:
        return None
    return preflight.data_migrations_blocked(
        preflight.classify(connection), pending) is None


def collect(engine: Engine | Connection | None = None, *,
            plugins: Iterable[str] | None = None,
            site_user: str | None = None,
            migrations_dir: str | None = None,
            config_path: str | None = None) -> dict:
    """The status of the database of ``engine`` (CKAN's by default) as a
    JSON-serialisable dict.  ``plugins`` defaults to ``ckan.plugins``,
    ``site_user`` to ``ckan.site_id`` and ``config_path`` (named in the
    next command) to the file of CKAN's config."""
    if engine is None or plugins is None or site_user is None \
            or config_path is None:
        from ckan.common import config
        if plugins is None:
            plugins = config.get("ckan.plugins") or []
        if site_user is None:
            site_user = config.get("ckan.site_id")
        if config_path is None:
            config_path = config.get("__file__")
    if engine is None:
        import ckan.model as model
        engine = model.ensure_engine()
    if isinstance(engine, Connection):
        return _collect(engine, list(plugins), site_user, migrations_dir,
                        config_path)
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            return _collect(connection, list(plugins), site_user,
                            migrations_dir, config_path)
        finally:
            connection.rollback()


def _collect(connection: Connection, plugins: list[str],
             site_user: str | None, migrations_dir: str | None,
             config_path: str | None) -> dict:
    database = database_state(connection, plugins)
    files = migration_files(migrations_dir)
    applied = applied_migrations(connection)
    by_name = {entry["file"]: entry for entry in applied}
    for entry in applied:
        on_disk = next((f for f in files if f["file"] == entry["file"]), None)
        entry["file_present"] = on_disk is not None
        entry["checksum_matches"] = (on_disk is not None
                                     and on_disk["checksum"] == entry["checksum"])
    pending = [f["file"] for f in files if f["file"] not in by_name]
    data = {
        "applied": applied,
        "pending": pending,
        # Applied, but the file has changed since: the ledger and the code
        # disagree, which an operator must look at before going on.
        "changed": [entry["file"] for entry in applied
                    if entry["file_present"] and not entry["checksum_matches"]],
        # Whether the pending ones can run here, or need
        # `migrate --no-data-migrations` (None: none pending).
        "applicable": data_migrations_applicable(connection, database,
                                                 pending),
    }
    demoted = demoted_not_promoted(connection) if database["is_ckan"] else None
    search = (search_index_state(connection, site_user)
              if database["kind"] == "alembic" else None)
    step = next_step(connection, database, data, demoted, config_path, search)
    return {
        "database": database,
        "data_migrations": data,
        "demotions_recorded": demoted is not None,
        "demoted_not_promoted": demoted or [],
        "counts": counts(connection, site_user) if database["is_ckan"] else None,
        "search_index": search,
        "next": step.step,
        "next_command": command_line(step.step, config_path),
        "next_reason": step.reason,
    }


# --- printing --------------------------------------------------------------

def describe_database(database: dict) -> str:
    if database["kind"] == "empty":
        return "empty (not a CKAN database)"
    if database["kind"] == "not-ckan":
        return "not a CKAN database"
    if database["kind"] == "legacy" and database["legacy_version"] is None:
        return "legacy CKAN schema at an unknown version"
    if database["kind"] == "legacy":
        return (f"legacy CKAN schema, sqlalchemy-migrate version "
                f"{database['legacy_version']}")
    number = database["revision_number"]
    label = f"{number:03d} " if number is not None else ""
    head = ("CKAN's head" if database["at_head"] else
            f"head is {database['head_number']:03d} {database['head']}")
    return f"CKAN alembic revision {label}{database['alembic_revision']} ({head})"


def format_text(status: dict) -> str:
    """The status as a short summary for people."""
    database = status["database"]
    lines = [f"Database:            {describe_database(database)}"]
    if database["is_ckan"]:
        core = ("unknown" if database["pending_core_migrations"] is None
                else "none pending" if not database["pending_core_migrations"]
                else f"{database['pending_core_count']} pending")
        plugins = database["pending_plugin_migrations"]
        plugin_text = (", ".join(f"{name} ({count})"
                                 for name, count in plugins.items())
                       or "none pending")
        lines += [f"Core migrations:     {core}",
                  f"Plugin migrations:   {plugin_text}"]
    data = status["data_migrations"]
    if data["applied"]:
        for index, entry in enumerate(data["applied"]):
            label = "Data migrations:" if index == 0 else ""
            note = "" if entry["checksum_matches"] else (
                "  FILE CHANGED SINCE" if entry["file_present"]
                else "  FILE MISSING")
            done = "skipped" if entry["skipped"] else "applied"
            lines.append(f"{label:<21}{entry['file']} {done} "
                         f"{entry['applied_at']} sha256 "
                         f"{entry['checksum'][:12]}{note}")
    else:
        lines.append(f"{'Data migrations:':<21}none applied")
    applicable = {True: " (they apply to this database)",
                  False: " (they cannot apply to this database: "
                         "migrate --no-data-migrations skips them)",
                  None: ""}[data["applicable"]]
    lines.append(f"{'Pending data:':<21}"
                 f"{', '.join(data['pending']) or 'none'}{applicable}")
    if status["demotions_recorded"]:
        demoted = status["demoted_not_promoted"]
        names = ", ".join(user["name"] for user in demoted) or "none"
        lines.append(f"{'To promote again:':<21}{names}")
    if status["counts"]:
        c = status["counts"]
        lines.append(f"{'Counts:':<21}{c['datasets']} datasets, "
                     f"{c['organisations']} organisations, {c['users']} users, "
                     f"{c['sysadmins']} sysadmins")
    search = status.get("search_index")
    if search:
        found = (f"cannot be read: {search['problem']}" if search["problem"]
                 else f"{search['indexed']} datasets (the database: "
                      f"{search['datasets']}" + (
                          f", {search['unindexable']} of them with a "
                          "relationship CKAN cannot index"
                          if search.get("unindexable") else "") + ")")
        lines.append(f"{'Search index:':<21}{found}")
    lines.append(f"{'Next:':<21}"
                 f"{status['next_command'] or 'nothing to run, because:'}")
    lines.append(f"{'':<21}({status['next_reason']})")
    return "\n".join(lines)
