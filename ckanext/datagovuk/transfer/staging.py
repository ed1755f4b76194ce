"""The database an import loads into, ``<target>__import_<pid>``: its
target checked, then created, claimed against other imports, given the
extensions the dump needs, verified, and swapped in for the target (or
dropped)."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from ckanext.datagovuk import db, output
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.stream import Echo

KEY_TABLES = ("package", "user", "group", "member", "resource")
VERSION_TABLES = ("migrate_version", "alembic_version")
COUNTED_TABLES = ("package", "resource", "user", "group", "member",
                  "package_extra", "revision", "activity")
# Debian packages of extensions that PostgreSQL itself does not ship.
EXTENSION_PACKAGES = {
    "postgis": "postgresql-{major}-postgis-3",
    "postgis_raster": "postgresql-{major}-postgis-3",
    "postgis_topology": "postgresql-{major}-postgis-3",
    "postgis_tiger_geocoder": "postgresql-{major}-postgis-3",
    "address_standardizer": "postgresql-{major}-postgis-3",
    "pgrouting": "postgresql-{major}-pgrouting",
    "pg_repack": "postgresql-{major}-repack",
    "pgaudit": "postgresql-{major}-pgaudit",
    "plv8": "postgresql-{major}-plv8",
    "pg_partman": "postgresql-{major}-partman",
    "hypopg": "postgresql-{major}-hypopg",
    "postgresql_unit": "postgresql-{major}-unit",
    "ip4r": "postgresql-{major}-ip4r",
}


def _identifier_name(base: str, suffix: str) -> str:
    """``base + suffix`` cut to PostgreSQL's 63-byte name limit."""
    room = 63 - len(suffix.encode())
    cut = base.encode()[:room].decode("utf-8", "ignore")
    return cut + suffix


def staging_name(target: str, pid: int | None = None) -> str:
    return _identifier_name(target, f"__import_{pid or os.getpid()}")


def backup_name(target: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
    return _identifier_name(target, f"__before_import_{stamp}")


def failed_name(target: str, when: float | None = None) -> str:
    """Where ``--keep-failed`` keeps a staging database: not a staging
    name, which the next import would take for a killed one's and drop."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
    return _identifier_name(target, f"__failed_import_{stamp}")


def extension_package(name: str, server_major: int) -> str:
    pattern = EXTENSION_PACKAGES.get(name)
    if pattern:
        return pattern.format(major=server_major)
    return f"postgresql-{server_major}-{name.replace('_', '-')} (if packaged)"


@dataclass
class TargetState:
    exists: bool
    tables: int = 0
    sessions: int = 0
    applications: str = ""

    @property
    def empty(self) -> bool:
        return self.tables == 0


def inspect_target(url) -> TargetState:
    url = db.parse(url)
    if not db.database_exists(url):
        return TargetState(exists=False)
    tables = db.query(url, f"the database {url.database}",
                      "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                      "ON n.oid = c.relnamespace WHERE c.relkind IN "
                      "('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN "
                      "('pg_catalog', 'information_schema') "
                      "AND n.nspname NOT LIKE 'pg_toast%%' "
                      "AND n.nspname NOT LIKE 'pg_temp%%'")[0][0]
    sessions, applications = db.other_sessions(url)
    return TargetState(True, tables, sessions, applications)


def sessions_refusal(database: str, count: int, applications: str) -> str:
    return (f"{count} other session(s) are connected to the database "
            f"{database} ({applications}); stop the site and its workers "
            "(or wait for them) and try again")


class Staging:
    """The staging database of one import into ``target_url``."""

    def __init__(self, target_url, admin_url: str | None, echo: Echo):
        self.echo = echo
        self.target_url = db.parse(target_url)
        self.target = self.target_url.database
        self.maintenance = db.maintenance_url(self.target_url)
        self.name = staging_name(self.target)
        self.url = db.with_database(self.target_url, self.name)
        self.created = False
        self.lock_connection = None
        self.admin_url = admin_url
        # Set when the CKAN user may not create or rename databases.
        self.ddl_admin_url = None
        self.server_major = 0
        self.available_extensions: set[str] = set()
        self.created_extensions: set[str] = set()

    # -- the target --------------------------------------------------------

    def check_target(self, replace: bool) -> TargetState:
        """Refuse a target that has data (without ``replace``) or other
        sessions, or a server we may not create databases on."""
        state = inspect_target(self.target_url)
        where = f"the database {self.target} ({db.safe_url(self.target_url)})"
        if state.exists and not state.empty and not replace:
            raise OperatorError(
                f"{where} already has {state.tables} tables; give --replace "
                "to replace it (the old one is kept under a backup name "
                "unless --drop-old)")
        if state.sessions:
            raise OperatorError(sessions_refusal(
                self.target, state.sessions, state.applications))
        self.check_server()
        self.echo(f"target: database {self.target} on "
                  f"{db.safe_url(self.target_url)} ("
                  + ("does not exist yet" if not state.exists else
                     "empty" if state.empty else
                     f"{state.tables} tables, will be replaced") + ")")
        return state

    def check_server(self) -> None:
        if not db.can_create_databases(self.target_url):
            if not self.admin_url:
                raise OperatorError(
                    f"the database user {self.target_url.username} may not "
                    "create databases (no CREATEDB) and no admin URL was "
                    "given (--admin-url-env VAR, VAR holding a superuser "
                    "URL)")
            db.query(db.maintenance_url(self.admin_url),
                     "the admin connection", "SELECT 1")
            self.ddl_admin_url = db.parse(self.admin_url)
        self.server_major = db.server_major(self.target_url)
        self.available_extensions = {row[0] for row in db.query(
            self.maintenance, "the database server",
            "SELECT name FROM pg_available_extensions")}

    # -- create, claim, drop -----------------------------------------------

    def create(self) -> None:
        self.claim()
        if db.database_exists(self.url):
            # Left by an earlier run of a process with our pid (killed -9).
            self.drop_database(self.name)
        try:
            db.create_database(self.url, self.ddl_admin_url)
        except psycopg2.Error as error:
            raise OperatorError(f"cannot create the staging database "
                                f"{self.name}: {db.first_line(error)}")
        self.created = True
        self.echo(f"staging database: {self.name}")

    def claim(self) -> None:
        """Hold a session advisory lock named after our staging database for
        as long as this import runs, and drop the staging databases of
        imports into the same target whose lock nobody holds: those were
        killed outright (kill -9, the OOM killer) and could not clean up."""
        self.lock_connection = db.open_connection(self.maintenance,
                                                  "the database server")
        # "<target>__import_" as staging_name() cuts it for the longest pid.
        prefix = _identifier_name(self.target, "__import_9999999")[:-7]
        with self.lock_connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (self.name,))
            cur.execute("SELECT datname FROM pg_database WHERE "
                        "left(datname, %s) = %s AND datname <> %s",
                        (len(prefix), prefix, self.name))
            for (name,) in cur.fetchall():
                cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                            (name,))
                if not cur.fetchone()[0]:
                    continue        # another import is running into it
                try:
                    self.drop_database(name)
                    output.notice(self.echo, f"dropped {name}, left by an "
                                  "import that was killed")
                finally:
                    cur.execute("SELECT pg_advisory_unlock(hashtext(%s))",
                                (name,))

    def hold_claim(self) -> None:
        """Take the staging database's lock again when the session holding
        it is gone (the server restarted while nothing else of ours was
        connected, as during the transfer), so that an import into the same
        target does not drop it as left by a killed one; refuse to go on
        when another import already holds it."""
        if self.lock_connection is None \
                or db.still_open(self.lock_connection):
            return
        self.lock_connection = db.open_connection(self.maintenance,
                                                  "the database server")
        with self.lock_connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                        (self.name,))
            taken = cur.fetchone()[0]
        if not taken or not db.database_exists(self.url):
            raise OperatorError(
                f"the session holding the staging database {self.name} "
                "was lost (did the server restart?) and another import into "
                f"{self.target} has taken it over or dropped it; nothing was "
                "imported")
        output.notice(self.echo, f"the session holding the staging "
                      f"database {self.name} was lost (did the server "
                      "restart?): it is held again")

    def release(self) -> None:
        if self.lock_connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self.lock_connection.close()
            self.lock_connection = None

    def drop_patiently(self, seconds: float = 60) -> None:
        """Drop the staging database, retrying while the server cannot be
        reached (a restart is what may have broken the import)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.drop_database(self.name)
                return
            except OperatorError as error:
                if time.monotonic() >= deadline:
                    output.notice(self.echo, f"could not drop the staging "
                                  f"database {self.name}: {error}; drop it "
                                  "by hand")
                    return
                time.sleep(1)

    def drop_database(self, name: str) -> None:
        db.query(db.maintenance_url(self.ddl_admin_url or self.target_url),
                 f"dropping the database {name}",
                 sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                     sql.Identifier(name)))

    def cleanup(self, failed: bool, keep: bool = False) -> None:
        if failed and self.created:
            if keep:
                self.keep_for_inspection()
            else:
                self.drop_patiently()
        self.release()

    def keep_for_inspection(self) -> None:
        """``--keep-failed``: the failed staging database renamed out of
        the way of later imports, its name printed; dropped if that fails."""
        kept = failed_name(self.target)
        try:
            db.query(db.maintenance_url(self.ddl_admin_url or self.target_url),
                     f"renaming the database {self.name}",
                     sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                         sql.Identifier(self.name), sql.Identifier(kept)))
        except OperatorError as error:
            output.notice(self.echo, f"could not keep the staging database "
                          f"({error}); dropping it")
            self.drop_patiently()
            return
        output.notice(self.echo, f"the failed staging database is kept for "
                      f"inspection as {kept} (drop it with DROP DATABASE "
                      f"{kept})")

    # -- extensions --------------------------------------------------------

    def ensure_extension(self, name: str) -> None:
        """Refuse a dump that needs an extension this server lacks, naming
        the package; create the others up front, as the admin when the
        CKAN user may not."""
        if name in self.created_extensions or name == "plpgsql":
            return
        if name not in self.available_extensions:
            raise OperatorError(
                f"the dump needs the PostgreSQL extension {name}, which "
                "this server does not have: install "
                f"{extension_package(name, self.server_major)} on the "
                "database server")
        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
            sql.Identifier(name))
        conn = db.open_connection(self.url, "the staging database")
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        except psycopg2.errors.InsufficientPrivilege as error:
            if not self.admin_url:
                raise OperatorError(
                    f"the extension {name} needs a superuser to create it "
                    f"({db.first_line(error)}): give an admin URL with "
                    "--admin-url-env")
            db.query(db.with_database(self.admin_url, self.name),
                     f"creating the extension {name}", statement)
        except psycopg2.Error as error:
            raise OperatorError(f"cannot create the extension {name}: "
                                f"{db.first_line(error)}")
        finally:
            conn.close()
        self.created_extensions.add(name)

    # -- verify and swap ---------------------------------------------------

    def verify(self) -> tuple[dict[str, int], int, str]:
        conn = db.open_connection(self.url, "the staging database")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = 'public'")
                tables = {row[0] for row in cur.fetchall()}
                missing = [name for name in KEY_TABLES if name not in tables]
                if missing or not tables.intersection(VERSION_TABLES):
                    if not tables.intersection(VERSION_TABLES):
                        missing.append("migrate_version or alembic_version")
                    raise OperatorError(
                        "the dump is not a CKAN database: it has no "
                        + ", ".join(missing))
                counts = {}
                for name in COUNTED_TABLES:
                    if name in tables:
                        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(
                            sql.Identifier("public", name)))
                        counts[name] = cur.fetchone()[0]
                cur.execute("SELECT pg_database_size(current_database()), "
                            "pg_size_pretty(pg_database_size("
                            "current_database()))")
                size, pretty = cur.fetchone()
        finally:
            conn.close()
        return counts, size, pretty

    def swap(self, state: TargetState, drop_old: bool) -> str | None:
        """Rename the target out of the way and the staging database into
        its place, in one transaction."""
        exists = db.database_exists(self.target_url)
        backup = backup_name(self.target) if exists else None
        for name in ([self.target] if exists else []) + [self.name]:
            count, applications = db.other_sessions(
                db.with_database(self.target_url, name))
            if count:
                raise OperatorError(sessions_refusal(name, count,
                                                     applications))
        self._rename_in(backup)
        self.created = False
        if backup and (state.empty or drop_old):
            self.drop_database(backup)
            self.echo(f"dropped the previous "
                      f"{'empty ' if state.empty else ''}database")
        return backup

    def _rename_in(self, backup: str | None) -> None:
        conn = db.open_connection(
            db.maintenance_url(self.ddl_admin_url or self.target_url),
            "the database server")
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                if backup:
                    cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(self.target), sql.Identifier(backup)))
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(self.name), sql.Identifier(self.target)))
            conn.commit()
        except psycopg2.Error as error:
            conn.rollback()
            raise OperatorError(f"cannot swap the imported database in: "
                                f"{db.first_line(error)}")
        finally:
            conn.close()
