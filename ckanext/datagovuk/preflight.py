"""What the database is, and what would make CKAN's upgrade fail on it.

:func:`classify` says what a database is (legacy sqlalchemy-migrate version,
alembic revision, empty, not CKAN) and :func:`check` refuses, with one line,
what cannot work.  Nothing in :func:`classify`, :func:`check` or
:func:`find_traps` changes the database.

The traps are data (or leftovers) that abort CKAN's one-transaction upgrade
part way.  :func:`fix_traps` fixes each inside the migration's transaction,
after the data migrations (which delete users and rows that would otherwise
be fixed for nothing), and says what it did:

* NULL keys or values in active ``package_extra``/``group_extra`` rows:
  revision 106 folds them into JSONB ``extras`` with a check that every value
  is a string.  NULL values become ``''``; rows with a NULL key are deleted
  (the archive keeps ``package_extra``/``group_extra`` as they were).
* resources whose resource group has no dataset: revision 105's foreign key.
  :mod:`upgrade` deletes them right after 074 (reported here, fixed there).
* indexes that a pending revision creates already exist (production carried
  the continuity indexes ahead of 079/080, and 082, 091, 092, 102, 104, 108
  likewise): ``DuplicateTable``.  They are dropped; the revision recreates
  them.
* related items: revision 083 drops ``related``/``related_dataset`` only
  when they are empty; :mod:`archive` copies and empties them.
* tables that a pending revision creates already exist (``resource_view``
  072, ``package_member`` 097, ``api_token`` 099, the file tables 109):
  moved to the archive schema.
* active users sharing an empty email (``''``): revisions 102 and 108 add
  unique indexes on the email of active users.  Empty emails become NULL.
* active users whose emails differ only in case: revision 108's unique index
  on ``lower(email)``.  Which account keeps the address is a person's
  decision, so by default the migration stops (and rolls back) listing them;
  ``resolve_email_clash="keep-oldest"`` (``--resolve-email-clash
  keep-oldest``) keeps the address on the oldest account of each group and
  clears it on the others, recording them in
  ``datagovuk.email_clash_resolutions``.
* with the ``tracking`` plugin enabled, its migration adds a primary key on
  ``tracking_raw (user_key, url, access_timestamp)``: rows with a NULL there
  and exact duplicates are deleted.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import alembic_runner, archive, db, upgrade
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.legacy import ckan_legacy_version

# The data migrations (data.gov.uk's 001) run on CKAN 2.2's schema, before
# the upgrade, and read or change these tables; CKAN's later legacy
# revisions drop some (074 resource_group, 078 the old authorization
# tables), so 001 applies from legacy 71 up to 73.  Any other database is
# upgraded with `migrate --no-data-migrations`.
TABLES_DATA_MIGRATIONS_NEED = (
    "package", "package_extra", "package_extra_revision", "package_tag",
    "package_tag_revision", "tag", "resource", "resource_group", "user",
    "member", "member_revision", "activity", "activity_detail", "dashboard",
    "rating", "user_following_user", "user_following_dataset",
    "user_following_group", "authorization_group_user", "user_object_role",
    "package_role", "group_role", "system_role", "authorization_group_role")
NO_DATA_MIGRATIONS_OPTION = "--no-data-migrations"
CKAN_MARKER_TABLES = ("package", "user")
EMAIL_CLASH_OPTIONS = ("stop", "keep-oldest")
EMAIL_CLASH_LEDGER = "datagovuk.email_clash_resolutions"

# name -> (table it is on, legacy number of the revision creating it)
INDEXES_CREATED_BY_UPGRADE = {
    "idx_resource_continuity_id": 79,
    "idx_member_continuity_id": 80,
    "idx_package_tag_continuity_id": 80,
    "idx_package_continuity_id": 80,
    "idx_package_extra_continuity_id": 80,
    "idx_package_creator_user_id": 82,
    "idx_group_extra_group_id": 91,
    "idx_package_resource_package_id": 92,
    "idx_only_one_active_email": 102,
    "idx_view_resource_id": 104,
    "idx_only_one_active_email_no_case": 108,
}
TABLES_CREATED_BY_UPGRADE = {
    "resource_view": 72, "package_member": 97, "api_token": 99,
    "file": 109, "file_owner": 109, "file_owner_transfer_history": 109,
}
# Extensions a dump may need -> the Debian package providing them
# (``{major}``: the server's major version).
EXTENSION_PACKAGES = {
    "postgis": "postgresql-{major}-postgis-3",
    "postgis_topology": "postgresql-{major}-postgis-3",
    "postgis_raster": "postgresql-{major}-postgis-3",
    "postgis_tiger_geocoder": "postgresql-{major}-postgis-3",
    "address_standardizer": "postgresql-{major}-postgis-3",
    "pgrouting": "postgresql-{major}-pgrouting",
    "hstore": "postgresql-{major} (contrib)",
    "pg_trgm": "postgresql-{major} (contrib)",
    "unaccent": "postgresql-{major} (contrib)",
}

Progress = Callable[[str], None]


@dataclass
class DatabaseState:
    kind: str                           # legacy | alembic | empty | not-ckan
    legacy_version: Optional[int] = None
    revision: Optional[str] = None
    head: Optional[str] = None
    tables: list[str] = field(default_factory=list)

    @property
    def at_head(self) -> bool:
        return self.kind == "alembic" and self.revision == self.head

    def describe(self) -> str:
        if self.kind == "legacy":
            return (f"CKAN database at legacy sqlalchemy-migrate version "
                    f"{self.legacy_version} (CKAN 2.2 is 71)")
        if self.kind == "alembic":
            where = "head" if self.at_head else f"not head ({self.head})"
            return f"CKAN database at alembic revision {self.revision}, {where}"
        if self.kind == "empty":
            return "empty database"
        return "not a CKAN database"


def classify(connection: Connection) -> DatabaseState:
    tables = archive.public_tables(connection)
    head = alembic_runner.head()
    if not tables:
        return DatabaseState("empty", head=head)
    revision = alembic_runner.current_revision(connection)
    legacy = ckan_legacy_version(connection)
    is_ckan = all(table in tables for table in CKAN_MARKER_TABLES)
    if revision and is_ckan:
        return DatabaseState("alembic", legacy, revision, head, tables)
    if legacy is not None and is_ckan:
        return DatabaseState("legacy", legacy, None, head, tables)
    return DatabaseState("not-ckan", legacy, revision, head, tables)


def data_migrations_blocked(state: DatabaseState,
                            pending_migrations: Iterable[str]
                            ) -> Optional[str]:
    """Why the pending data migrations cannot run on the database
    ``state`` describes (one line naming the option that upgrades it
    without them), or None when they can (or none is pending)."""
    pending_migrations = list(pending_migrations)
    missing = [table for table in TABLES_DATA_MIGRATIONS_NEED
               if table not in state.tables]
    if not (pending_migrations and missing):
        return None
    return (f"data migration {pending_migrations[0]} is pending but the "
            f"database is a {state.describe()}, past the CKAN 2.2 tables it "
            f"needs (no {', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): upgrade it with "
            f"`migrate {NO_DATA_MIGRATIONS_OPTION}` (CKAN's upgrade with "
            "the archive and the trap fixes; data.gov.uk's data migrations "
            "are recorded as skipped)")


def check(connection: Connection, pending_migrations: Iterable[str] = (),
          url: Optional[str] = None,
          data_migrations: bool = True) -> DatabaseState:
    """Classify the database and refuse what cannot work; with
    ``data_migrations=False`` the pending ones will be skipped, so need no
    CKAN 2.2 tables."""
    state = classify(connection)
    where = f" {db.safe_url(url)}" if url else ""
    if state.kind == "empty":
        raise OperatorError(
            f"the database{where} is empty: import the old site's dump first "
            "(datagovuk import), or use `ckan db init` for a new site")
    if state.kind == "not-ckan":
        tables = ", ".join(state.tables[:5]) + \
            (", ..." if len(state.tables) > 5 else "")
        raise OperatorError(
            f"the database{where} is not a CKAN database (no migrate_version "
            f"or alembic_version with package and user tables; it has "
            f"{tables})")
    if state.kind == "legacy" and not (
            1 <= state.legacy_version <= alembic_runner.LAST_LEGACY_VERSION):
        raise OperatorError(
            f"the database{where} says it is at legacy sqlalchemy-migrate "
            f"version {state.legacy_version}, which no CKAN had (they run "
            f"from 1 to {alembic_runner.LAST_LEGACY_VERSION}): check "
            "migrate_version")
    blocked = data_migrations_blocked(state, pending_migrations)
    if data_migrations and blocked:
        raise OperatorError(blocked)
    missing_extensions = unavailable_extensions(connection)
    if missing_extensions:
        raise OperatorError(missing_extensions_message(connection,
                                                       missing_extensions))
    return state


# What the server lacks -------------------------------------------------

def server_major_version(connection: Connection) -> int:
    return int(connection.exec_driver_sql(
        "SHOW server_version_num").scalar()) // 10000


def unavailable_extensions(connection: Connection,
                           needed: Iterable[str] = ()) -> list[str]:
    """Extensions the database has (or a dump needs, ``needed``) that this
    server cannot provide."""
    installed = list(connection.exec_driver_sql(
        "SELECT extname FROM pg_extension").scalars())
    available = set(connection.exec_driver_sql(
        "SELECT name FROM pg_available_extensions").scalars())
    wanted = dict.fromkeys([*installed, *needed])
    return [name for name in wanted if name not in available]


def missing_extensions_message(connection: Connection,
                               names: list[str]) -> str:
    major = server_major_version(connection)
    packages = dict.fromkeys(
        EXTENSION_PACKAGES.get(name, f"the package providing {name}")
        .format(major=major) for name in names)
    return (f"this PostgreSQL server lacks the extension(s) "
            f"{', '.join(names)} the database needs: install "
            f"{', '.join(packages)} (e.g. apt-get install "
            f"{next(iter(packages)).split(' ')[0]}) and try again")


def extensions_in_dump(dump_path: str) -> list[str]:
    """The extensions a ``pg_dump -Fc`` file creates (from its TOC)."""
    listing = subprocess.run(["pg_restore", "-l", dump_path], text=True,
                             capture_output=True, check=True).stdout
    found = re.findall(r"^\d+;\s+\d+\s+\d+\s+EXTENSION\s+-\s+(\S+)",
                       listing, re.MULTILINE)
    return list(dict.fromkeys(found))


def check_dump_needs(connection: Connection, dump_path: str) -> None:
    """Refuse (one line naming the Debian package) a dump that needs an
    extension this server lacks; for the import before it restores."""
    if not os.path.isfile(dump_path):
        raise OperatorError(f"dump {dump_path} does not exist")
    missing = unavailable_extensions(connection,
                                     extensions_in_dump(dump_path))
    if missing:
        raise OperatorError(missing_extensions_message(connection, missing))


# Upgrade traps ---------------------------------------------------------

@dataclass
class Trap:
    name: str
    found: int
    description: str
    fix: str

    def __str__(self) -> str:
        return f"{self.name}: {self.found} ({self.description}) -> {self.fix}"


@dataclass
class AppliedFix:
    name: str
    rows: int
    what: str

    def __str__(self) -> str:
        return f"{self.name}: {self.what}: {self.rows}"


class EmailClashError(OperatorError):
    """Active users whose emails differ only in case: a person decides."""


def _has(connection: Connection, table: str) -> bool:
    return inspect(connection).has_table(table)


def _count(connection: Connection, sql: str, params=None) -> int:
    return connection.exec_driver_sql(sql, params or {}).scalar() or 0


def revisions_to_run(connection: Connection) -> set[int]:
    return upgrade.revisions_to_run(connection)


def _existing_relations(connection: Connection, kind: str,
                        names: Iterable[str]) -> list[str]:
    return list(connection.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
        "AND c.relkind = ANY(%(kinds)s) AND c.relname = ANY(%(names)s) "
        "ORDER BY c.relname",
        {"kinds": list(kind), "names": list(names)}).scalars())


def existing_indexes(connection: Connection) -> list[str]:
    running = revisions_to_run(connection)
    names = [name for name, number in INDEXES_CREATED_BY_UPGRADE.items()
             if number in running]
    return _existing_relations(connection, "i", names)


def existing_tables(connection: Connection) -> list[str]:
    running = revisions_to_run(connection)
    names = [name for name, number in TABLES_CREATED_BY_UPGRADE.items()
             if number in running]
    return _existing_relations(connection, "rp", names)


def _null_extras_sql(table: str, what: str) -> str:
    return (f"SELECT count(*) FROM {table} WHERE state = 'active' "
            f"AND {what} IS NULL")


def email_clashes(connection: Connection) -> list[tuple[str, list[tuple]]]:
    """Groups of active users whose non-empty emails are equal ignoring
    case: [(lower email, [(id, name, email, created), ...])]."""
    if not _has(connection, "user"):
        return []
    rows = connection.exec_driver_sql(
        'SELECT lower(email), id, name, email, created FROM "user" u '
        "WHERE state = 'active' AND btrim(coalesce(email, '')) <> '' "
        'AND lower(email) IN (SELECT lower(email) FROM "user" '
        "WHERE state = 'active' AND btrim(coalesce(email, '')) <> '' "
        "GROUP BY lower(email) HAVING count(*) > 1) "
        "ORDER BY lower(email), created NULLS LAST, name").all()
    groups: dict[str, list[tuple]] = {}
    for key, *user in rows:
        groups.setdefault(key, []).append(tuple(user))
    return list(groups.items())


def email_clash_message(groups) -> str:
    listed = "; ".join(
        f"{email}: " + ", ".join(f"{name} ({user_id})"
                                 for user_id, name, *_ in users)
        for email, users in groups[:5])
    more = f"; and {len(groups) - 5} more" if len(groups) > 5 else ""
    return (f"{len(groups)} email address(es) shared (ignoring case) by "
            f"active users that the migration keeps, which CKAN 2.12 "
            f"forbids: {listed}{more}; nothing was changed: fix the "
            "accounts, or rerun with --resolve-email-clash keep-oldest "
            "(the oldest account keeps the address, the others' is cleared "
            f"and recorded in {EMAIL_CLASH_LEDGER})")


def find_traps(connection: Connection, plugins: Iterable[str] = ()
               ) -> list[Trap]:
    """What would abort CKAN's upgrade on this data, found without changing
    anything.  On a 2.2 database before the data migrations, the email
    checks count users the data migrations may still delete."""
    plugins = set(plugins)
    traps = []
    running = revisions_to_run(connection)
    if 106 in running:
        for table in ("package_extra", "group_extra"):
            if not _has(connection, table):
                continue
            values = _count(connection, _null_extras_sql(table, "value"))
            keys = _count(connection, _null_extras_sql(table, "key"))
            if values:
                traps.append(Trap(
                    f"null-{table}-values", values,
                    f"active {table} rows with a NULL value fail revision "
                    "106's check", "set to ''"))
            if keys:
                traps.append(Trap(
                    f"null-{table}-keys", keys,
                    f"active {table} rows with a NULL key cannot become "
                    "JSON (revision 106)", "deleted (archived copy kept)"))
    if 74 in running and _has(connection, "resource_group") and \
            "resource_group_id" in {c["name"] for c in inspect(connection)
                                    .get_columns("resource")}:
        orphans = _count(
            connection,
            "SELECT count(*) FROM resource r LEFT JOIN resource_group g "
            "ON g.id = r.resource_group_id LEFT JOIN package p "
            "ON p.id = g.package_id WHERE p.id IS NULL")
        if orphans:
            traps.append(Trap(
                "orphan-resources", orphans,
                "resources whose resource group has no dataset fail "
                "revision 105's foreign key",
                "deleted with their revisions after revision 074 (archived "
                "copy of resource_revision kept)"))
    if 83 in running:
        full = archive.rows_to_empty(connection, archive.public_tables(
            connection))
        if full:
            traps.append(Trap(
                "related-items", sum(full.values()),
                "revision 083 keeps the related-item tables when they hold "
                "rows, and `ckan db check` then rejects them",
                f"copied to {archive.LEGACY_SCHEMA} and emptied so 083 drops"
                " them (even with --no-archive)"))
    for name in existing_indexes(connection):
        traps.append(Trap(
            f"existing-index-{name}", 1,
            f"index {name} already exists; a pending revision creates it",
            "dropped (the revision recreates it)"))
    for name in existing_tables(connection):
        traps.append(Trap(
            f"existing-table-{name}", 1,
            f"table {name} already exists; a pending revision creates it",
            f"moved to {archive.LEGACY_SCHEMA}"))
    if running & {102, 108} and _has(connection, "user"):
        blank = _count(connection,
                       'SELECT count(*) FROM "user" WHERE state = \'active\' '
                       "AND email IS NOT NULL AND btrim(email) = ''")
        if blank > 1:
            traps.append(Trap(
                "blank-emails", blank,
                "active users with an empty email break the unique email "
                "indexes of revisions 102/108", "set to NULL"))
    clash = email_clash_trap(connection, running)
    if clash:
        traps.append(clash)
    if "tracking" in plugins and _has(connection, "tracking_raw"):
        duplicates = tracking_duplicates(connection)
        if duplicates:
            traps.append(Trap(
                "tracking-raw-duplicates", duplicates,
                "tracking_raw rows that are duplicates or have NULLs in "
                "(user_key, url, access_timestamp), the tracking plugin's "
                "new primary key", "deleted"))
    return traps


def email_clash_trap(connection: Connection,
                     running: Optional[set[int]] = None) -> Optional[Trap]:
    """Active users whose emails differ only in case, when a pending
    revision (102, 108) forbids them: the one trap that needs a person's
    decision (``--resolve-email-clash``)."""
    if running is None:
        running = revisions_to_run(connection)
    if not running & {102, 108}:
        return None
    clashes = email_clashes(connection)
    if not clashes:
        return None
    return Trap("email-clashes", len(clashes),
                "email addresses shared, ignoring case, by active users "
                "(revision 108's unique index); checked again after the "
                "data migrations",
                "needs a decision: --resolve-email-clash keep-oldest")


def tracking_duplicates(connection: Connection) -> int:
    if _has(connection, "tracking_alembic_version") and \
            alembic_runner.current_revision(
                connection, "tracking_alembic_version"):
        return 0
    return _count(
        connection,
        "SELECT count(*) - count(DISTINCT (user_key, url, access_timestamp))"
        " FILTER (WHERE user_key IS NOT NULL AND url IS NOT NULL AND "
        "access_timestamp IS NOT NULL) FROM tracking_raw")


def fix_traps(connection: Connection, plugins: Iterable[str] = (),
              resolve_email_clash: str = "stop",
              progress: Optional[Progress] = None) -> list[AppliedFix]:
    """Fix what :func:`find_traps` finds, inside the caller's transaction
    (orphan resources are left to :mod:`upgrade`).  Raises
    :class:`EmailClashError` when kept users' emails clash and no
    resolution was chosen."""
    if resolve_email_clash not in EMAIL_CLASH_OPTIONS:
        raise OperatorError(
            f"--resolve-email-clash must be one of "
            f"{', '.join(EMAIL_CLASH_OPTIONS)}, not {resolve_email_clash}")
    plugins = set(plugins)
    fixes: list[AppliedFix] = []

    def done(name: str, what: str, rows: int) -> None:
        if rows:
            fixes.append(AppliedFix(name, rows, what))
            if progress:
                progress(f"  fixed {name}: {what}: {rows}")

    running = revisions_to_run(connection)
    if 106 in running:
        for table in ("package_extra", "group_extra"):
            if not _has(connection, table):
                continue
            done(f"null-{table}-keys", "active rows with a NULL key deleted",
                 connection.exec_driver_sql(
                     f"DELETE FROM {table} WHERE state = 'active' "
                     "AND key IS NULL").rowcount)
            done(f"null-{table}-values", "NULL values set to ''",
                 connection.exec_driver_sql(
                     f"UPDATE {table} SET value = '' WHERE state = 'active' "
                     "AND value IS NULL").rowcount)
    for name in existing_indexes(connection):
        connection.exec_driver_sql(f'DROP INDEX public."{name}"')
        done(f"existing-index-{name}",
             "dropped (a pending revision recreates it)", 1)
    tables = existing_tables(connection)
    if tables:
        result = archive.ArchiveResult()
        connection.exec_driver_sql(
            f"CREATE SCHEMA IF NOT EXISTS {archive.LEGACY_SCHEMA}")
        archive.move_tables(
            connection, tables,
            {name: "created again by CKAN's upgrade" for name in tables},
            result)
        for table in result.tables:
            done(f"existing-table-{table.name}",
                 f"moved to {archive.LEGACY_SCHEMA} (rows)", table.rows or 1)
    if running & {102, 108} and _has(connection, "user"):
        done("blank-emails", "empty emails of active users set to NULL",
             connection.exec_driver_sql(
                 'UPDATE "user" SET email = NULL WHERE state = \'active\' '
                 "AND email IS NOT NULL AND btrim(email) = ''").rowcount)
        clashes = email_clashes(connection)
        if clashes and resolve_email_clash == "stop":
            raise EmailClashError(email_clash_message(clashes))
        if clashes:
            done("email-clashes",
                 "emails cleared on all but the oldest account "
                 f"(recorded in {EMAIL_CLASH_LEDGER})",
                 resolve_email_clashes_keep_oldest(connection))
    if "tracking" in plugins and _has(connection, "tracking_raw") and \
            tracking_duplicates(connection):
        done("tracking-raw-duplicates",
             "duplicate or incomplete tracking_raw rows deleted",
             connection.exec_driver_sql(
                 "DELETE FROM tracking_raw t WHERE user_key IS NULL OR "
                 "url IS NULL OR access_timestamp IS NULL OR EXISTS ("
                 "SELECT 1 FROM tracking_raw o WHERE o.user_key = t.user_key"
                 " AND o.url = t.url AND o.access_timestamp = "
                 "t.access_timestamp AND o.ctid < t.ctid)").rowcount)
    return fixes


def resolve_email_clashes_keep_oldest(connection: Connection) -> int:
    connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS datagovuk")
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {EMAIL_CLASH_LEDGER} ("
        "user_id text NOT NULL, user_name text NOT NULL, email text NOT NULL,"
        " kept_by text NOT NULL, resolved_at timestamptz NOT NULL "
        "DEFAULT now())")
    return connection.exec_driver_sql(
        "WITH ranked AS (SELECT id, name, email, lower(email) AS folded, "
        "first_value(name) OVER w AS keeper, row_number() OVER w AS n "
        'FROM "user" WHERE state = \'active\' '
        "AND btrim(coalesce(email, '')) <> '' "
        "WINDOW w AS (PARTITION BY lower(email) "
        "ORDER BY created NULLS LAST, name)), "
        "cleared AS (UPDATE \"user\" u SET email = NULL FROM ranked r "
        "WHERE r.id = u.id AND r.n > 1 RETURNING r.id, r.name, r.email, "
        "r.keeper) "
        f"INSERT INTO {EMAIL_CLASH_LEDGER} (user_id, user_name, email, "
        "kept_by) SELECT id, name, email, keeper FROM cleared").rowcount
