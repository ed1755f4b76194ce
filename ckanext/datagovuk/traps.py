"""The traps of CKAN's upgrade: data (or leftovers) that abort its
one-transaction upgrade part way, each detected and fixed by one entry of
:data:`REGISTRY`.

An entry names the revisions it breaks (it is looked for only when one of
them is still to run), how it is found without changing anything, and how
it is fixed inside the migration's transaction, after the data migrations
(which delete users and rows that would otherwise be fixed for nothing).
Two traps are fixed where the upgrade needs it, and their entry says where
(``fixed_elsewhere``): resources whose resource group has no dataset are
deleted by :mod:`upgrade` right after revision 074, and related items are
emptied by :mod:`archive`.  A trap that needs a person's decision names the
option that settles it (``decision``).

Adding a trap is one entry: a detect function, a fix function, the
revisions it guards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import alembic_runner, archive, upgrade
from ckanext.datagovuk.errors import OperatorError

EMAIL_CLASH_OPTIONS = ("stop", "keep-oldest")
EMAIL_CLASH_LEDGER = "datagovuk.email_clash_resolutions"
EXTRA_TABLES = ("package_extra", "group_extra")

# name -> legacy number of the revision creating it
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

Progress = Callable[[str], None]


@dataclass
class Trap:
    """A trap found in a database."""
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


@dataclass
class Scope:
    """What every detect and fix function is given."""
    connection: Connection
    running: set[int]
    plugins: set[str] = field(default_factory=set)
    resolve_email_clash: str = "stop"

    def has(self, table: str) -> bool:
        return inspect(self.connection).has_table(table)

    def count(self, sql: str, params=None) -> int:
        return self.connection.exec_driver_sql(sql, params or {}).scalar() \
            or 0

    def rows(self, sql: str) -> int:
        return self.connection.exec_driver_sql(sql).rowcount


# Each detect function returns {subject: count} (a subject is a table or an
# index name, or "" for a trap with a single subject); each fix function
# returns {subject: rows fixed}.
Found = dict[str, int]


@dataclass(frozen=True)
class UpgradeTrap:
    name: str                       # "{subject}" is replaced by the subject
    revisions: frozenset[int]       # empty: whatever runs
    description: str
    remedy: str
    detect: Callable[[Scope], Found]
    fix: Optional[Callable[[Scope], Found]] = None
    fixed: str = ""                 # what the fix did, for the report
    fixed_elsewhere: str = ""       # where a trap without `fix` is fixed
    plugin: Optional[str] = None
    decision: Optional[Callable[[Scope], str]] = None

    def applies(self, scope: Scope) -> bool:
        if self.plugin and self.plugin not in scope.plugins:
            return False
        return not self.revisions or bool(self.revisions & scope.running)

    def found(self, scope: Scope) -> list[Trap]:
        remedy = self.decision(scope) if self.decision else self.remedy
        return [Trap(self.name.format(subject=subject), count,
                     self.description.format(subject=subject),
                     remedy.format(subject=subject, legacy=archive.LEGACY_SCHEMA))
                for subject, count in self.detect(scope).items() if count]

    def apply(self, scope: Scope) -> list[AppliedFix]:
        if self.fix is None:
            return []
        return [AppliedFix(self.name.format(subject=subject), rows,
                           self.fixed.format(legacy=archive.LEGACY_SCHEMA))
                for subject, rows in self.fix(scope).items() if rows]


# NULL keys or values in active package_extra/group_extra rows ---------------
# Revision 106 folds them into JSONB ``extras`` with a check that every value
# is a string.  The archive keeps the tables as they were.

def _null_extras(scope: Scope, column: str) -> Found:
    return {table: scope.count(f"SELECT count(*) FROM {table} WHERE state = "
                               f"'active' AND {column} IS NULL")
            for table in EXTRA_TABLES if scope.has(table)}


def _delete_null_keys(scope: Scope) -> Found:
    return {table: scope.rows(f"DELETE FROM {table} WHERE state = 'active' "
                              "AND key IS NULL")
            for table in EXTRA_TABLES if scope.has(table)}


def _blank_null_values(scope: Scope) -> Found:
    return {table: scope.rows(f"UPDATE {table} SET value = '' WHERE state = "
                              "'active' AND value IS NULL")
            for table in EXTRA_TABLES if scope.has(table)}


# Resources whose resource group has no dataset (revision 105's key) --------

def _orphan_resources(scope: Scope) -> Found:
    if not scope.has("resource_group") or "resource_group_id" not in {
            column["name"] for column in
            inspect(scope.connection).get_columns("resource")}:
        return {}
    return {"": scope.count(
        "SELECT count(*) FROM resource r LEFT JOIN resource_group g "
        "ON g.id = r.resource_group_id LEFT JOIN package p "
        "ON p.id = g.package_id WHERE p.id IS NULL")}


# Related items (revision 083 keeps the tables when they hold rows) -------

def _related_items(scope: Scope) -> Found:
    full = archive.rows_to_empty(scope.connection,
                                 archive.public_tables(scope.connection))
    return {"": sum(full.values())} if full else {}


# Indexes and tables a pending revision creates that already exist ----------

def _existing(scope: Scope, kinds: str, created: dict[str, int]) -> list[str]:
    names = [name for name, number in created.items()
             if number in scope.running]
    return list(scope.connection.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
        "AND c.relkind = ANY(%(kinds)s) AND c.relname = ANY(%(names)s) "
        "ORDER BY c.relname", {"kinds": list(kinds), "names": names}
    ).scalars())


def existing_indexes(scope: Scope) -> Found:
    return dict.fromkeys(_existing(scope, "i", INDEXES_CREATED_BY_UPGRADE), 1)


def _drop_existing_indexes(scope: Scope) -> Found:
    found = existing_indexes(scope)
    for name in found:
        scope.connection.exec_driver_sql(f'DROP INDEX public."{name}"')
    return found


def existing_tables(scope: Scope) -> Found:
    return dict.fromkeys(_existing(scope, "rp", TABLES_CREATED_BY_UPGRADE), 1)


def _move_existing_tables(scope: Scope) -> Found:
    tables = list(existing_tables(scope))
    if not tables:
        return {}
    result = archive.ArchiveResult()
    scope.connection.exec_driver_sql(
        f"CREATE SCHEMA IF NOT EXISTS {archive.LEGACY_SCHEMA}")
    archive.move_tables(
        scope.connection, tables,
        {name: "created again by CKAN's upgrade" for name in tables}, result)
    return {table.name: table.rows or 1 for table in result.tables}


# Emails of active users (unique indexes of revisions 102 and 108) ---------

def _blank_emails(scope: Scope) -> Found:
    if not scope.has("user"):
        return {}
    blank = scope.count('SELECT count(*) FROM "user" WHERE state = \'active\''
                        " AND email IS NOT NULL AND btrim(email) = ''")
    return {"": blank if blank > 1 else 0}


def _null_blank_emails(scope: Scope) -> Found:
    if not scope.has("user"):
        return {}
    return {"": scope.rows(
        'UPDATE "user" SET email = NULL WHERE state = \'active\' '
        "AND email IS NOT NULL AND btrim(email) = ''")}


def email_clashes(connection: Connection) -> list[tuple[str, list[tuple]]]:
    """Groups of active users whose non-empty emails are equal ignoring
    case: [(lower email, [(id, name, email, created), ...])]."""
    if not inspect(connection).has_table("user"):
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


def _email_clashes(scope: Scope) -> Found:
    return {"": len(email_clashes(scope.connection))}


def _email_clash_decision(scope: Scope) -> str:
    if scope.resolve_email_clash == "keep-oldest":
        return ("decided by --resolve-email-clash keep-oldest: the oldest "
                "account keeps the address")
    return "needs a decision: --resolve-email-clash keep-oldest"


def _resolve_email_clashes(scope: Scope) -> Found:
    clashes = email_clashes(scope.connection)
    if clashes and scope.resolve_email_clash == "stop":
        raise EmailClashError(email_clash_message(clashes))
    if not clashes:
        return {}
    return {"": resolve_email_clashes_keep_oldest(scope.connection)}


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


# The tracking plugin's primary key on (user_key, url, access_timestamp) ---

def tracking_duplicates(scope: Scope) -> Found:
    if not scope.has("tracking_raw"):
        return {}
    if scope.has("tracking_alembic_version") and \
            alembic_runner.current_revision(
                scope.connection, "tracking_alembic_version"):
        return {}
    return {"": scope.count(
        "SELECT count(*) - count(DISTINCT (user_key, url, access_timestamp))"
        " FILTER (WHERE user_key IS NOT NULL AND url IS NOT NULL AND "
        "access_timestamp IS NOT NULL) FROM tracking_raw")}


def _delete_tracking_duplicates(scope: Scope) -> Found:
    if not sum(tracking_duplicates(scope).values()):
        return {}
    return {"": scope.rows(
        "DELETE FROM tracking_raw t WHERE user_key IS NULL OR "
        "url IS NULL OR access_timestamp IS NULL OR EXISTS ("
        "SELECT 1 FROM tracking_raw o WHERE o.user_key = t.user_key"
        " AND o.url = t.url AND o.access_timestamp = "
        "t.access_timestamp AND o.ctid < t.ctid)")}


# The one trap that needs a person's decision; status asks for it alone.
EMAIL_CLASHES = UpgradeTrap(
    "email-clashes", frozenset({102, 108}),
    "email addresses shared, ignoring case, by active users (revision "
    "108's unique index); checked again after the data migrations",
    "", _email_clashes, _resolve_email_clashes,
    fixed=f"emails cleared on all but the oldest account (recorded in "
          f"{EMAIL_CLASH_LEDGER})",
    decision=_email_clash_decision)


# The registry, in the order the fixes run -------------------------------

REGISTRY: tuple[UpgradeTrap, ...] = (
    UpgradeTrap(
        "null-{subject}-keys", frozenset({106}),
        "active {subject} rows with a NULL key cannot become JSON "
        "(revision 106)", "deleted (archived copy kept)",
        lambda scope: _null_extras(scope, "key"), _delete_null_keys,
        fixed="active rows with a NULL key deleted"),
    UpgradeTrap(
        "null-{subject}-values", frozenset({106}),
        "active {subject} rows with a NULL value fail revision 106's check",
        "set to ''", lambda scope: _null_extras(scope, "value"),
        _blank_null_values, fixed="NULL values set to ''"),
    UpgradeTrap(
        "orphan-resources", frozenset({74}),
        "resources whose resource group has no dataset fail revision 105's "
        "foreign key",
        "deleted with their revisions after revision 074 (archived copy of "
        "resource_revision kept)", _orphan_resources,
        fixed_elsewhere="upgrade.delete_orphan_resources, right after 074"),
    UpgradeTrap(
        "related-items", frozenset({83}),
        "revision 083 keeps the related-item tables when they hold rows, and "
        "`ckan db check` then rejects them",
        "copied to {legacy} and emptied so 083 drops them (even with "
        "--no-archive)", _related_items,
        fixed_elsewhere="archive.empty_for_upgrade"),
    UpgradeTrap(
        "existing-index-{subject}", frozenset(),
        "index {subject} already exists; a pending revision creates it",
        "dropped (the revision recreates it)", existing_indexes,
        _drop_existing_indexes,
        fixed="dropped (a pending revision recreates it)"),
    UpgradeTrap(
        "existing-table-{subject}", frozenset(),
        "table {subject} already exists; a pending revision creates it",
        "moved to {legacy}", existing_tables, _move_existing_tables,
        fixed="moved to {legacy} (rows)"),
    UpgradeTrap(
        "blank-emails", frozenset({102, 108}),
        "active users with an empty email break the unique email indexes of "
        "revisions 102/108", "set to NULL", _blank_emails, _null_blank_emails,
        fixed="empty emails of active users set to NULL"),
    EMAIL_CLASHES,
    UpgradeTrap(
        "tracking-raw-duplicates", frozenset(),
        "tracking_raw rows that are duplicates or have NULLs in (user_key, "
        "url, access_timestamp), the tracking plugin's new primary key",
        "deleted", tracking_duplicates, _delete_tracking_duplicates,
        fixed="duplicate or incomplete tracking_raw rows deleted",
        plugin="tracking"),
)


def _scope(connection: Connection, plugins: Iterable[str],
           resolve_email_clash: str = "stop") -> Scope:
    return Scope(connection, upgrade.revisions_to_run(connection),
                 set(plugins), resolve_email_clash)


def find_traps(connection: Connection, plugins: Iterable[str] = (),
               resolve_email_clash: str = "stop") -> list[Trap]:
    """What would abort CKAN's upgrade on this data, found without changing
    anything.  On a 2.2 database before the data migrations, the email
    checks count users the data migrations may still delete."""
    scope = _scope(connection, plugins, resolve_email_clash)
    return [found for trap in REGISTRY if trap.applies(scope)
            for found in trap.found(scope)]


def fix_traps(connection: Connection, plugins: Iterable[str] = (),
              resolve_email_clash: str = "stop",
              progress: Optional[Progress] = None) -> list[AppliedFix]:
    """Fix what :func:`find_traps` finds, inside the caller's transaction
    (the traps ``fixed_elsewhere`` are left to their places).  Raises
    :class:`EmailClashError` when kept users' emails clash and no
    resolution was chosen."""
    if resolve_email_clash not in EMAIL_CLASH_OPTIONS:
        raise OperatorError(
            f"--resolve-email-clash must be one of "
            f"{', '.join(EMAIL_CLASH_OPTIONS)}, not {resolve_email_clash}")
    scope = _scope(connection, plugins, resolve_email_clash)
    fixes = []
    for trap in REGISTRY:
        if not trap.applies(scope):
            continue
        for fix in trap.apply(scope):
            fixes.append(fix)
            if progress:
                progress(f"  fixed {fix}")
    return fixes


def email_clash_trap(connection: Connection) -> Optional[Trap]:
    """The email clashes alone, when a pending revision forbids them."""
    scope = _scope(connection, ())
    found = EMAIL_CLASHES.found(scope) if EMAIL_CLASHES.applies(scope) else []
    return found[0] if found else None
