"""Applies the data migrations (``migrations/NNN_*.sql``) and keeps their ledger.

The caller owns the transaction: every function here runs on the SQLAlchemy
``Connection`` it is given and never commits or rolls back, so ``migrate``
can run the data migrations, the archive copy and CKAN's schema upgrade as one
transaction (or roll all of it back for ``--dry-run``)::

    with engine.connect() as connection:
        applied = runner.apply_pending(connection,
                                       settings=runner.settings_from_config())
        ...
        connection.commit()

The ledger ``datagovuk.applied_migrations`` (outside ``public``, so ``ckan db
check`` stays clean) holds one row per applied file: its name, sha256
checksum, when it was applied and how long it took, and whether it was
skipped instead (``migrate --no-data-migrations``: :func:`skip_pending`);
a skipped file is no longer pending.  A file is identified by
its name: ``migrations_dir`` may point at another folder (tests, a site's own
files), and a file of that folder named like an applied one must have the
applied checksum.

Migration files are plain SQL as PostgreSQL's simple query protocol runs it
(no psql backslash commands, no BEGIN/COMMIT). A file reports what each of its
steps changed with ``RAISE NOTICE 'step N: what: rows'``; those notices come
back parsed in ``AppliedMigration.steps``.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ckanext.datagovuk import db, settings as dgu_settings
from ckanext.datagovuk.errors import OperatorError

DEFAULT_MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "migrations")
LEDGER = "datagovuk.applied_migrations"
FILENAME_PATTERN = re.compile(r"^(\d{3})_[A-Za-z0-9_.-]+\.sql$")
# "NOTICE:  step 5: users deleted: 12"; the severity word is translated
# when the server's lc_messages is not English.
STEP_NOTICE_PATTERN = re.compile(r"^\w+:\s+step (\d+): (.*?)(?:: (\d+))?\s*$")

# The GUCs 001 reads with current_setting(name, true).
KEEP_SYSADMINS_GUC = "datagovuk.keep_sysadmins"
ORGANOGRAM_BASE_URL_GUC = "datagovuk.organogram_base_url"
SITE_USER_GUC = "datagovuk.site_user"

_DOLLAR_QUOTED = re.compile(r"\$([A-Za-z_]\w*|)\$.*?\$\1\$", re.DOTALL)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_QUOTED = re.compile(r"'(?:[^']|'')*'")
_TRANSACTION_CONTROL = re.compile(
    r"(?:^|;)\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|"
    r"PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class MigrationFile:
    name: str          # e.g. "001_bytemark_to_govuk.sql": the ledger key
    path: str
    checksum: str      # sha256 hex of the file's bytes

    @property
    def number(self) -> int:
        return int(self.name[:3])

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as handle:
            return handle.read()


@dataclass(frozen=True)
class StepNotice:
    step: int
    description: str
    rows: int | None   # None: the step reported no count

    def __str__(self) -> str:
        rows = "" if self.rows is None else f": {self.rows}"
        return f"step {self.step}: {self.description}{rows}"


@dataclass
class AppliedMigration:
    name: str
    checksum: str
    duration_seconds: float
    steps: list[StepNotice] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)   # all, as PostgreSQL sent them


@dataclass(frozen=True)
class LedgerEntry:
    name: str
    checksum: str
    applied_at: Any
    duration_seconds: float
    skipped: bool = False


def checksum_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def discover(migrations_dir: str | None = None) -> list[MigrationFile]:
    """The ``NNN_*.sql`` files of ``migrations_dir`` (default: the package's
    ``migrations`` folder) in the order they apply. Other files are ignored;
    two files sharing a number are refused (their order would be a guess)."""
    directory = migrations_dir or DEFAULT_MIGRATIONS_DIR
    if not os.path.isdir(directory):
        raise OperatorError(f"migrations folder {directory} does not exist")
    files = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if FILENAME_PATTERN.match(name) and os.path.isfile(path):
            files.append(MigrationFile(name, path, checksum_of(path)))
    files.sort(key=lambda migration: (migration.number, migration.name))
    for before, after in zip(files, files[1:]):
        if before.number == after.number:
            raise OperatorError(
                f"migrations {before.name} and {after.name} in {directory} "
                f"share the number {before.name[:3]}: rename one")
    return files


def ledger_exists(connection: Connection) -> bool:
    return connection.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": LEDGER}).scalar()


def ensure_ledger(connection: Connection) -> None:
    connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS datagovuk")
    connection.exec_driver_sql(f"""
        CREATE TABLE IF NOT EXISTS {LEDGER} (
            filename text PRIMARY KEY,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL,
            duration_seconds double precision NOT NULL)""")
    # Ledgers written before skipping existed lack the column.
    connection.exec_driver_sql(
        f"ALTER TABLE {LEDGER} ADD COLUMN IF NOT EXISTS "
        "skipped boolean NOT NULL DEFAULT false")


def applied(connection: Connection) -> dict[str, LedgerEntry]:
    """The ledger by file name (empty when there is no ledger yet)."""
    if not ledger_exists(connection):
        return {}
    rows = connection.execute(text(
        f"SELECT * FROM {LEDGER} ORDER BY filename")).mappings()
    return {row["filename"]: LedgerEntry(
        row["filename"], row["checksum"], row["applied_at"],
        row["duration_seconds"], row.get("skipped", False)) for row in rows}


def pending(connection: Connection,
            files: list[MigrationFile]) -> list[MigrationFile]:
    """The files not in the ledger yet, in order. Refuses (OperatorError
    naming the file) when an applied file has changed since."""
    done = applied(connection)
    for migration in files:
        entry = done.get(migration.name)
        if entry is not None and entry.checksum != migration.checksum:
            raise OperatorError(
                f"migration {migration.name} has changed since it was applied "
                f"(checksum {entry.checksum[:12]} then, {migration.checksum[:12]} "
                f"now): restore the applied version and put changes in a new file")
    return [migration for migration in files if migration.name not in done]


def transaction_control(sql: str) -> str | None:
    """The first BEGIN/COMMIT/ROLLBACK-like statement of ``sql``, if any,
    ignoring comments, string literals and dollar-quoted (DO/function)
    bodies. Such a statement would end the caller's transaction."""
    stripped = _DOLLAR_QUOTED.sub("''", sql)
    stripped = _BLOCK_COMMENT.sub(" ", stripped)
    stripped = _LINE_COMMENT.sub(" ", stripped)
    stripped = _QUOTED.sub("''", stripped)
    match = _TRANSACTION_CONTROL.search(stripped)
    return match.group(1).upper() if match else None


def parse_step_notices(notices: Iterable[str]) -> list[StepNotice]:
    """The ``step N: what: rows`` notices among PostgreSQL's notice texts
    (as psycopg2 collects them, "NOTICE:  step 1: tag rows deleted: 12\\n")."""
    steps = []
    for notice in notices:
        match = STEP_NOTICE_PATTERN.match(notice.strip())
        if match:
            number, description, rows = match.groups()
            steps.append(StepNotice(int(number), description,
                                    None if rows is None else int(rows)))
    return steps


def apply_settings(connection: Connection, settings: Mapping[str, str]) -> None:
    """Set the migrations' GUCs for the rest of the current transaction."""
    for name, value in settings.items():
        connection.execute(text("SELECT set_config(:name, :value, true)"),
                           {"name": name, "value": "" if value is None else str(value)})


class _NoticeCollector:
    """Stands in for psycopg2's ``connection.notices`` list, which keeps only
    the last 50 notices."""

    def __init__(self):
        self.items: list[str] = []

    def append(self, notice: str) -> None:
        self.items.append(notice)


def run_file(connection: Connection, migration: MigrationFile) -> list[str]:
    """Execute one migration file; return the notices it raised."""
    sql = migration.read()
    statement = transaction_control(sql)
    if statement:
        raise OperatorError(
            f"migration {migration.name} contains {statement}: migration files "
            "must not control the transaction (the runner wraps them in one)")
    if not connection.in_transaction():
        connection.begin()
    # The step notices are the report: make sure the server sends them.
    connection.exec_driver_sql(
        "SELECT set_config('client_min_messages', 'notice', true) "
        "WHERE current_setting('client_min_messages') IN ('warning', 'error')")
    raw = connection.connection.dbapi_connection
    original = raw.notices
    collector = _NoticeCollector()
    raw.notices = collector
    try:
        execute_script(connection, sql, f"migration {migration.name}")
    finally:
        raw.notices = original
    return collector.items


def execute_script(connection: Connection, sql: str, what: str) -> None:
    """Run ``sql`` (several statements) in the caller's transaction;
    OperatorError "``what`` failed: ..." on a database error."""
    # The file goes to psycopg2 directly, without parameters: SQLAlchemy's
    # exec_driver_sql always passes some, and psycopg2 then reads every '%'
    # (LIKE '%.csv') as a placeholder. Same DBAPI connection, so the same
    # transaction as the caller's.
    raw = connection.connection.dbapi_connection
    try:
        with raw.cursor() as cursor:
            cursor.execute(sql)
    except psycopg2.Error as error:
        if raw.closed:
            # The server went away (restart, crash, cut link). SQLAlchemy did
            # not see it (the file ran on the raw cursor): tell it, or the
            # caller's rollback fails on the dead connection and hides this.
            connection.invalidate()
        raise OperatorError(f"{what} failed: {db.first_line(error)}"
                            ) from error


def apply_pending(connection: Connection, migrations_dir: str | None = None,
                  settings: Mapping[str, str] | None = None,
                  progress: Callable[[str], None] | None = None,
                  ) -> list[AppliedMigration]:
    """Apply the pending files of ``migrations_dir`` in order on
    ``connection`` and record each in the ledger; no commit (the caller's).
    ``settings`` are GUCs set transaction-locally first (see
    ``settings_from_config``). Returns what was applied: empty when nothing
    was pending. Raises OperatorError (file name and the first line of
    PostgreSQL's error) when a file fails; the caller must then roll back."""
    files = discover(migrations_dir)
    todo = pending(connection, files)
    if not todo:
        return []
    ensure_ledger(connection)
    apply_settings(connection, settings or {})
    results = []
    for migration in todo:
        if progress:
            progress(f"applying {migration.name}")
        started = time.monotonic()
        notices = run_file(connection, migration)
        duration = time.monotonic() - started
        connection.execute(text(
            f"INSERT INTO {LEDGER} (filename, checksum, applied_at, duration_seconds) "
            "VALUES (:name, :checksum, clock_timestamp(), :duration)"),
            {"name": migration.name, "checksum": migration.checksum,
             "duration": duration})
        result = AppliedMigration(migration.name, migration.checksum, duration,
                                  parse_step_notices(notices),
                                  [notice.strip() for notice in notices])
        results.append(result)
        if progress:
            progress(f"applied {migration.name} in {duration:.1f} s")
    return results


def skip_pending(connection: Connection, migrations_dir: str | None = None
                 ) -> list[str]:
    """Record the pending files of ``migrations_dir`` as skipped, without
    running them (``migrate --no-data-migrations``), so that they are no
    longer pending; no commit. Returns their names."""
    todo = pending(connection, discover(migrations_dir))
    if not todo:
        return []
    ensure_ledger(connection)
    for migration in todo:
        connection.execute(text(
            f"INSERT INTO {LEDGER} (filename, checksum, applied_at, "
            "duration_seconds, skipped) VALUES (:name, :checksum, "
            "clock_timestamp(), 0, true)"),
            {"name": migration.name, "checksum": migration.checksum})
    return [migration.name for migration in todo]


def settings_from_config(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The GUCs of the data migrations from a CKAN config (CKAN's own by
    default): the sysadmins to keep, the organogram base URL and the new
    site's user (``ckan.site_id``)."""
    if config is None:
        from ckan.common import config as ckan_config
        config = ckan_config
    keep = dgu_settings.get(dgu_settings.KEEP_SYSADMINS, config) or []
    if isinstance(keep, str):
        keep = keep.split()
    base_url = dgu_settings.get(dgu_settings.ORGANOGRAM_BASE_URL, config) or ""
    return {
        KEEP_SYSADMINS_GUC: ",".join(keep),
        ORGANOGRAM_BASE_URL_GUC: base_url.strip(),
        SITE_USER_GUC: (config.get("ckan.site_id") or "").strip(),
    }
