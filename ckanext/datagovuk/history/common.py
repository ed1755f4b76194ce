"""What the history's steps share: their report, the SQL files of ``sql/``
run on the caller's transaction, and the questions they ask the database."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

SQL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql")


@dataclass
class HistoryResult:
    datasets: int = 0
    revisions: int = 0
    completed: int = 0
    added: int = 0
    # reason -> activities left as CKAN 2.2 wrote them
    left: dict[str, int] = field(default_factory=dict)
    mapping_archived: int = 0
    actors_deleted: int = 0
    actors_renamed: int = 0
    # Activities of deleted users left pointing at them: no user has the
    # new site's name (ckan.site_id) yet.
    actors_unmapped: int = 0
    timestamps_restored: int = 0
    skipped: str = ""
    seconds: float = 0.0


def run_sql(connection: Connection, name: str) -> int:
    """One file of sql/ on the caller's transaction, straight to
    psycopg2 (no parameters: '%' stays a literal); the row count of its
    last statement."""
    with open(os.path.join(SQL_DIR, name), encoding="utf-8") as handle:
        sql = handle.read()
    with connection.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.rowcount


def columns(connection: Connection, table: str) -> set[str]:
    inspector = inspect(connection)
    if not inspector.has_table(table):
        return set()
    return {column["name"] for column in inspector.get_columns(table)}


def scalar(connection: Connection, sql: str) -> int:
    return int(connection.exec_driver_sql(sql).scalar() or 0)


def has_revisions(connection: Connection) -> bool:
    """Whether the revision tables and activity.revision_id are still
    there (CKAN's 093 and 107 drop them)."""
    return ("revision_id" in columns(connection, "activity")
            and bool(columns(connection, "package_revision")))
