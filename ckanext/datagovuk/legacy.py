"""CKAN's own row of sqlalchemy-migrate's ``migrate_version`` table.

A legacy CKAN database shares ``migrate_version`` with every extension
that used sqlalchemy-migrate (ckanext-doi documents one): each keeps a row
of its own, ``repository_id`` naming the extension and ``version`` its own
number.  CKAN's row has ``repository_id = 'Ckan'`` (its ``migrate.cfg``)
and a ``repository_path`` ending in ``ckan/migration``.  A legacy ``paster
db upgrade`` rewrites CKAN's row, so the order of the rows on disk says
nothing: the row is always picked by its identity, never as "the first".
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError

TABLE = "migrate_version"
CKAN_REPOSITORY_ID = "Ckan"
# Either mark identifies CKAN's row; the path may end with a slash.
IS_CKAN_ROW = ("(repository_id = 'Ckan' OR "
               "coalesce(repository_path, '') ~ '(^|/)ckan/migration/?$')")


def has_table(connection: Connection) -> bool:
    return inspect(connection).has_table(TABLE)


def _rows(connection: Connection, condition: str) -> list[tuple]:
    return [tuple(row) for row in connection.exec_driver_sql(
        "SELECT repository_id, repository_path, version FROM migrate_version "
        f"WHERE {condition} ORDER BY repository_id").all()]


def _names(rows: list[tuple]) -> str:
    return ", ".join(f"{repository_id!r} (version {version})"
                     for repository_id, _path, version in rows)


def ckan_legacy_version(connection: Connection) -> Optional[int]:
    """CKAN's sqlalchemy-migrate version: None when the database has no
    ``migrate_version`` table; OperatorError when no row, or more than one
    row, of the table looks like CKAN's."""
    if not has_table(connection):
        return None
    rows = _rows(connection, IS_CKAN_ROW)
    if len(rows) == 1:
        return rows[0][2]
    if not rows:
        others = _rows(connection, "true")
        held = f"it holds {_names(others)}" if others else "it is empty"
        raise OperatorError(
            "migrate_version has no row for CKAN itself (repository_id "
            f"'{CKAN_REPOSITORY_ID}' or a repository_path ending in "
            f"ckan/migration; {held}): the legacy schema version is unknown")
    raise OperatorError(
        f"migrate_version has {len(rows)} rows that look like CKAN's "
        f"({_names(rows)}): delete the one that is not CKAN's current "
        "schema version")


def other_rows(connection: Connection) -> list[tuple]:
    """The rows of ``migrate_version`` that are not CKAN's."""
    if not has_table(connection):
        return []
    return _rows(connection, f"NOT {IS_CKAN_ROW}")


def move_other_rows(connection: Connection, schema: str) -> int:
    """Move the rows of other extensions from ``migrate_version`` to
    ``schema.migrate_version`` (created when needed): CKAN's revision 090
    drops the table, and CKAN itself reads whichever row comes first.
    Returns how many rows moved."""
    if not other_rows(connection):
        return 0
    target = f"{db.quote_identifier(schema)}.{TABLE}"
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {target} (LIKE {TABLE})")
    connection.exec_driver_sql(
        f"INSERT INTO {target} SELECT * FROM {TABLE} "
        f"WHERE NOT {IS_CKAN_ROW}")
    return connection.exec_driver_sql(
        f"DELETE FROM {TABLE} WHERE NOT {IS_CKAN_ROW}").rowcount
