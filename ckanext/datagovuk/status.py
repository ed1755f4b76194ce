"""Where a database stands in the move from the old site: its schema
version, the data migrations applied and pending, the sysadmins still to be
promoted, a few counts, and the next command to run.

Everything is read with plain SQL in a read-only transaction: before the
migration the database does not match CKAN's model, so the ORM cannot be
used, and asking for the status must never change anything.  The SQL only
touches columns that CKAN 2.2 and 2.12 share (``user.state``,
``user.sysadmin``, ``package.type``, ``group.is_organization``, ...).
"""
from __future__ import annotations

import inspect as pyinspect
import os
from typing import Any, Iterable, Optional

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

import ckan.migration

from ckanext.datagovuk import legacy, runner

CORE_SCRIPTS = os.path.dirname(ckan.migration.__file__)
LEDGER_SCHEMA = "datagovuk"
# Users CKAN itself creates; they are not people and are not counted.
PSEUDO_USERS = ("logged_in", "visitor")

NEXT_COMMANDS = {
    "import": "ckan -c CKAN_INI datagovuk import",
    "migrate": "ckan -c CKAN_INI datagovuk migrate",
    "promote --demoted": "ckan -c CKAN_INI datagovuk promote --demoted",
    "search-index rebuild": "ckan -c CKAN_INI search-index rebuild",
}


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
    }
    has_ckan_tables = {"user", "package"} <= public
    if "migrate_version" in public and has_ckan_tables:
        version = legacy.ckan_legacy_version(connection)
        # Every revision numbered at or below the legacy version is a no-op.
        remaining = [rev for rev in script.walk_revisions()
                     if (_revision_ordinal(script, rev.revision) or 0)
                     > (version or 0)]
        state.update(kind="legacy", is_ckan=True, legacy_version=version,
                     pending_core_migrations=True,
                     pending_core_count=len(remaining))
    elif "alembic_version" in public and has_ckan_tables:
        current = MigrationContext.configure(connection).get_current_heads()
        revision = current[0] if len(current) == 1 else ",".join(current)
        count = _pending_count(script, current)
        state.update(kind="alembic", is_ckan=True, alembic_revision=revision,
                     revision_number=_revision_ordinal(script, revision),
                     at_head=count == 0, pending_core_migrations=count > 0,
                     pending_core_count=count)
    else:
        state["kind"] = "empty" if not public else "not-ckan"
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
             "duration_seconds": entry.duration_seconds}
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

def next_step(database: dict, data: dict,
              demoted: Optional[list[dict]]) -> tuple[str, str]:
    """The next command to run, and why."""
    if not database["is_ckan"]:
        return "import", "this database holds no CKAN site yet"
    if data["changed"]:
        # migrate refuses these; the operator must restore the applied file.
        names = ", ".join(data["changed"])
        return "migrate", (f"applied data migrations changed since: {names}; "
                           "restore the applied version first")
    if data["pending"]:
        names = ", ".join(data["pending"])
        return "migrate", f"data migrations not applied: {names}"
    if database["pending_core_migrations"]:
        return "migrate", "CKAN's schema upgrade has not run"
    if database["pending_plugin_migrations"]:
        names = ", ".join(database["pending_plugin_migrations"])
        return "migrate", f"plugin migrations pending: {names}"
    if demoted:
        return ("promote --demoted",
                f"{len(demoted)} demoted sysadmin(s) not promoted yet")
    return ("search-index rebuild",
            "the database is migrated; rebuild the search index if not "
            "done since the migration")


def collect(engine: Engine | Connection | None = None, *,
            plugins: Iterable[str] | None = None,
            site_user: str | None = None,
            migrations_dir: str | None = None) -> dict:
    """The status of the database of ``engine`` (CKAN's by default) as a
    JSON-serialisable dict.  ``plugins`` defaults to ``ckan.plugins`` and
    ``site_user`` to ``ckan.site_id`` of CKAN's config."""
    if engine is None or plugins is None or site_user is None:
        from ckan.common import config
        if plugins is None:
            plugins = config.get("ckan.plugins") or []
        if site_user is None:
            site_user = config.get("ckan.site_id")
    if engine is None:
        import ckan.model as model
        engine = model.ensure_engine()
    if isinstance(engine, Connection):
        return _collect(engine, list(plugins), site_user, migrations_dir)
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            return _collect(connection, list(plugins), site_user,
                            migrations_dir)
        finally:
            connection.rollback()


def _collect(connection: Connection, plugins: list[str],
             site_user: str | None, migrations_dir: str | None) -> dict:
    database = database_state(connection, plugins)
    files = migration_files(migrations_dir)
    applied = applied_migrations(connection)
    by_name = {entry["file"]: entry for entry in applied}
    for entry in applied:
        on_disk = next((f for f in files if f["file"] == entry["file"]), None)
        entry["file_present"] = on_disk is not None
        entry["checksum_matches"] = (on_disk is not None
                                     and on_disk["checksum"] == entry["checksum"])
    data = {
        "applied": applied,
        "pending": [f["file"] for f in files if f["file"] not in by_name],
        # Applied, but the file has changed since: the ledger and the code
        # disagree, which an operator must look at before going on.
        "changed": [entry["file"] for entry in applied
                    if entry["file_present"] and not entry["checksum_matches"]],
    }
    demoted = demoted_not_promoted(connection) if database["is_ckan"] else None
    next_name, reason = next_step(database, data, demoted)
    return {
        "database": database,
        "data_migrations": data,
        "demotions_recorded": demoted is not None,
        "demoted_not_promoted": demoted or [],
        "counts": counts(connection, site_user) if database["is_ckan"] else None,
        "next": next_name,
        "next_command": NEXT_COMMANDS[next_name],
        "next_reason": reason,
    }


# --- printing --------------------------------------------------------------

def describe_database(database: dict) -> str:
    if database["kind"] == "empty":
        return "empty (not a CKAN database)"
    if database["kind"] == "not-ckan":
        return "not a CKAN database"
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
        core = ("none pending" if not database["pending_core_migrations"]
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
            lines.append(f"{label:<21}{entry['file']} applied "
                         f"{entry['applied_at']} sha256 "
                         f"{entry['checksum'][:12]}{note}")
    else:
        lines.append(f"{'Data migrations:':<21}none applied")
    lines.append(f"{'Pending data:':<21}"
                 f"{', '.join(data['pending']) or 'none'}")
    if status["demotions_recorded"]:
        demoted = status["demoted_not_promoted"]
        names = ", ".join(user["name"] for user in demoted) or "none"
        lines.append(f"{'To promote again:':<21}{names}")
    if status["counts"]:
        c = status["counts"]
        lines.append(f"{'Counts:':<21}{c['datasets']} datasets, "
                     f"{c['organisations']} organisations, {c['users']} users, "
                     f"{c['sysadmins']} sysadmins")
    lines.append(f"{'Next:':<21}{status['next_command']}")
    lines.append(f"{'':<21}({status['next_reason']})")
    return "\n".join(lines)
