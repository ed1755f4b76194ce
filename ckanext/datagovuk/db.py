"""Connections to PostgreSQL from a CKAN database URL.

PostgreSQL's own client programs get their connection through libpq's
environment variables, so no password is ever on a command line.
"""
from __future__ import annotations

import os
import time

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url, URL

from ckanext.datagovuk.errors import OperatorError


def parse(url: str | URL) -> URL:
    return make_url(url) if isinstance(url, str) else url


def safe_url(url: str | URL) -> str:
    """The URL as it may be printed: the password masked."""
    return parse(url).render_as_string(hide_password=True)


def with_database(url: str | URL, database: str) -> URL:
    return parse(url).set(database=database)


def connect_args(url: str | URL) -> dict:
    url = parse(url)
    args = {"dbname": url.database, "user": url.username,
            "password": url.password, "host": url.host, "port": url.port}
    args.update(url.query)
    return {key: value for key, value in args.items() if value is not None}


def connect(url: str | URL, **extra):
    return psycopg2.connect(**connect_args(url), **extra)


def libpq_env(url: str | URL, base: dict | None = None) -> dict[str, str]:
    """An environment for psql/pg_dump/pg_restore that connects to ``url``."""
    url = parse(url)
    env = dict(os.environ if base is None else base)
    for name, value in (("PGHOST", url.host), ("PGPORT", url.port),
                        ("PGUSER", url.username),
                        ("PGPASSWORD", url.password),
                        ("PGDATABASE", url.database)):
        if value is not None:
            env[name] = str(value)
        else:
            env.pop(name, None)
    return env


def maintenance_url(url: str | URL) -> URL:
    """The server's maintenance database ``postgres``, as the same user."""
    return with_database(url, "postgres")


def open_connection(url: str | URL, what: str):
    """An autocommit connection to ``url``, or an OperatorError naming
    ``what`` could not be reached."""
    try:
        conn = connect(url, connect_timeout=15)
    except psycopg2.Error as error:
        raise OperatorError(f"cannot connect to {what} "
                            f"({safe_url(url)}): {first_line(error)}")
    conn.autocommit = True
    return conn


def still_open(connection) -> bool:
    """Whether ``connection``'s session is still there (a server restart
    ends it); one that is gone is closed."""
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except psycopg2.Error:
        try:
            connection.close()
        except psycopg2.Error:
            pass
        return False


def query(url: str | URL, what: str, statement, params=None) -> list[tuple]:
    """Run one statement on a connection of its own; its rows.  Any
    database error is an OperatorError about ``what``."""
    conn = open_connection(url, what)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    except psycopg2.Error as error:
        raise OperatorError(f"{what}: {first_line(error)}")
    finally:
        conn.close()


def database_exists(url: str | URL) -> bool:
    """Whether the database of ``url`` exists, asked of the maintenance
    database ``postgres`` as the same user."""
    return bool(query(maintenance_url(url), "the database server",
                      "SELECT 1 FROM pg_database WHERE datname = %s",
                      (parse(url).database,)))


def can_create_databases(url: str | URL) -> bool:
    return query(maintenance_url(url), "the database server",
                 "SELECT rolcreatedb OR rolsuper FROM pg_roles "
                 "WHERE rolname = current_user")[0][0]


def server_major(url: str | URL) -> int:
    return int(query(maintenance_url(url), "the database server",
                     "SHOW server_version_num")[0][0]) // 10000


def other_sessions(url: str | URL, settle: float = 3.0) -> tuple[int, str]:
    """Client sessions on the database of ``url``, and their application
    names (autovacuum workers do not count: PostgreSQL stops them itself
    for a rename).  Sessions that are just closing get ``settle`` seconds
    to go away."""
    deadline = time.monotonic() + settle
    while True:
        rows = query(maintenance_url(url), "the database server",
                     "SELECT count(*), coalesce(string_agg(DISTINCT "
                     "coalesce(nullif(application_name, ''), 'unnamed'), "
                     "', '), '') FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend'",
                     (parse(url).database,))
        count, applications = rows[0]
        if not count or time.monotonic() >= deadline:
            return count, applications
        time.sleep(0.2)


def create_database(url: str | URL, admin_url: str | URL | None = None,
                    template: str = "template0") -> None:
    """Create the database of ``url``, owned by its user; as that user when it
    has CREATEDB, otherwise through ``admin_url``."""
    target = parse(url)
    conn = connect(with_database(admin_url or target, "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL(
                "CREATE DATABASE {} OWNER {} TEMPLATE {} ENCODING 'UTF8'").format(
                sql.Identifier(target.database),
                sql.Identifier(target.username),
                sql.Identifier(template)))
    finally:
        conn.close()


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier, for SQL built as text."""
    return '"' + name.replace('"', '""') + '"'


def engine_connection(url: str | URL):
    """A NullPool engine for ``url`` and one SQLAlchemy connection of it
    (ours alone: no pool shares it), or an OperatorError in one line."""
    from sqlalchemy import create_engine, exc
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(url, poolclass=NullPool)
        return engine, engine.connect()
    except exc.DBAPIError as error:
        raise OperatorError(f"cannot connect to the database "
                            f"{safe_url(url)}: {first_line(error.orig)}")


def first_line(error: BaseException) -> str:
    """The first meaningful line of a database error, for one-line messages."""
    text = str(getattr(error, "pgerror", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
