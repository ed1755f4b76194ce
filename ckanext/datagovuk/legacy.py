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

import re
from typing import Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError

TABLE = "migrate_version"
CKAN_REPOSITORY_ID = "Ckan"
# Either mark identifies CKAN's row; the path may end with a slash.
CKAN_REPOSITORY_PATH = re.compile(r"(^|/)ckan/migration/?$")


def has_table(connection: Connection) -> bool:
    return inspect(connection).has_table(TABLE)


def is_ckan_row(row: tuple) -> bool:
    repository_id, repository_path, _version = row
    return (repository_id == CKAN_REPOSITORY_ID
            or bool(CKAN_REPOSITORY_PATH.search(repository_path or "")))


def _rows(connection: Connection) -> list[tuple]:
    return [tuple(row) for row in connection.exec_driver_sql(
        "SELECT repository_id, repository_path, version FROM migrate_version "
        "ORDER BY repository_id").all()]


def _names(rows: list[tuple]) -> str:
    return ", ".join(f"{repository_id!r} (version {version})"
                     for repository_id, _path, version in rows)


def ckan_legacy_version(connection: Connection) -> Optional[int]:
    """CKAN's sqlalchemy-migrate version: None when the database has no
    ``migrate_version`` table; OperatorError when no row, or more than one
    row, of the table looks like CKAN's."""
    if not has_table(connection):
        return None
    return version_from_rows(_rows(connection))


def version_from_rows(rows: list[tuple]) -> int:
    """CKAN's version among the rows (repository_id, repository_path,
    version) of ``migrate_version``, wherever they were read; OperatorError
    when no row, or more than one, looks like CKAN's."""
    ours = [row for row in rows if is_ckan_row(row)]
    if len(ours) == 1:
        return ours[0][2]
    if not ours:
        held = f"it holds {_names(rows)}" if rows else "it is empty"
        raise OperatorError(
            "migrate_version has no row for CKAN itself (repository_id "
            f"'{CKAN_REPOSITORY_ID}' or a repository_path ending in "
            f"ckan/migration; {held}): the legacy schema version is unknown")
    raise OperatorError(
        f"migrate_version has {len(ours)} rows that look like CKAN's "
        f"({_names(ours)}): delete the one that is not CKAN's current "
        "schema version")


def other_rows(connection: Connection) -> list[tuple]:
    """The rows of ``migrate_version`` that are not CKAN's."""
    if not has_table(connection):
        return []
    return [row for row in _rows(connection) if not is_ckan_row(row)]


def move_other_rows(connection: Connection, schema: str) -> int:
    """Move the rows of other extensions from ``migrate_version`` to
    ``schema.migrate_version`` (created when needed): CKAN's revision 090
    drops the table, and CKAN itself reads whichever row comes first.
    Returns how many rows moved."""
    others = {"ids": [row[0] for row in other_rows(connection)]}
    if not others["ids"]:
        return 0
    target = f"{db.quote_identifier(schema)}.{TABLE}"
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {target} (LIKE {TABLE})")
    connection.exec_driver_sql(
        f"INSERT INTO {target} SELECT * FROM {TABLE} "
        "WHERE repository_id = ANY(%(ids)s)", others)
    return connection.exec_driver_sql(
        f"DELETE FROM {TABLE} WHERE repository_id = ANY(%(ids)s)",
        others).rowcount
