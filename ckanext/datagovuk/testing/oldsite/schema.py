"""The schema of a legacy CKAN as CKAN's own migrations build it, plus the
DGU and old harvest tables (``*.sql`` beside this module), and which of the
generator's tables and columns each legacy version has."""
from __future__ import annotations

import os
import time
from typing import Optional

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import alembic_runner, db, traps
from ckanext.datagovuk.errors import OperatorError

from .known import (CONTINUITY_INDEXES, LEGACY_VERSION, MIGRATE_REPOSITORY_ID,
                    MIGRATE_REPOSITORY_PATH)
from .progress import Progress, say

SQL = os.path.dirname(os.path.abspath(__file__))


def read_sql(name: str) -> str:
    with open(os.path.join(SQL, name)) as handle:
        return handle.read()


def _engine(url):
    return create_engine(db.parse(url), poolclass=NullPool)


def build_schema(url, harvest: bool = True, progress: Progress = None,
                 version: int = LEGACY_VERSION) -> None:
    """Create the schema of a legacy CKAN at sqlalchemy-migrate ``version``
    (as CKAN's own migrations build it), ``migrate_version`` = ``version``,
    the DGU tables, the old harvest tables (unless ``harvest=False``) and
    the continuity indexes the version lacks, in one transaction, in the
    empty database of ``url``."""
    _check_version(version)
    started = time.monotonic()
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            alembic_runner.upgrade(connection,
                                   alembic_runner.legacy_revision(version))
            connection.exec_driver_sql("DROP TABLE alembic_version")
            connection.exec_driver_sql(read_sql("migrate_version.sql"))
            connection.execute(
                text(read_sql("insert_migrate_version.sql")),
                {"id": MIGRATE_REPOSITORY_ID, "path": MIGRATE_REPOSITORY_PATH,
                 "version": version})
            connection.exec_driver_sql(read_sql("dgu_tables.sql"))
            if harvest:
                connection.exec_driver_sql(read_sql("harvest_tables.sql"))
            for index, table in CONTINUITY_INDEXES.items():
                if traps.INDEXES_CREATED_BY_UPGRADE[index] > version:
                    connection.exec_driver_sql(
                        f"CREATE INDEX {index} ON {table} (continuity_id)")
    except Exception as error:
        raise OperatorError(
            f"cannot build the old schema in {db.safe_url(url)}: "
            f"{db.first_line(getattr(error, 'orig', None) or error)}") from error
    finally:
        engine.dispose()
    say(progress, f"schema: legacy CKAN (migrate_version {version}), DGU"
         f"{' and harvest' if harvest else ''} tables "
         f"({time.monotonic() - started:.1f}s)")


def _check_version(version: int) -> None:
    if not LEGACY_VERSION <= version <= alembic_runner.LAST_LEGACY_VERSION:
        raise OperatorError(
            f"--legacy-version must be from {LEGACY_VERSION} (CKAN 2.2) to "
            f"{alembic_runner.LAST_LEGACY_VERSION} (got {version})")


# Tables and columns the generator fills that exist only from, or only
# before, a legacy version: (table, column or None for the whole table) ->
# (first version that has it, first version that no longer has it).
SCHEMA_CHANGES = {
    ("resource_view", None): (72, None),
    ("resource", "package_id"): (74, None),
    ("resource_revision", "package_id"): (74, None),
    ("resource", "resource_group_id"): (None, 74),
    ("resource_revision", "resource_group_id"): (None, 74),
    ("resource_group", None): (None, 74),
    ("resource_group_revision", None): (None, 74),
    ("user_object_role", None): (None, 78),
    ("package_role", None): (None, 78),
    ("group_role", None): (None, 78),
    ("system_role", None): (None, 78),
    ("authorization_group_role", None): (None, 78),
    # 083 drops them when empty, as they are on a schema built from nothing.
    ("related", None): (None, 83),
    ("related_dataset", None): (None, 83),
    ("package", "metadata_created"): (84, None),
    ("package_revision", "metadata_created"): (84, None),
    ("user", "openid"): (None, 86),
}


def in_schema(version: int, table: str, column: Optional[str] = None) -> bool:
    """Whether the legacy schema at ``version`` has ``table`` (and
    ``column`` of it), as far as the generator's tables go."""
    for key in ((table, None), (table, column)):
        first, gone = SCHEMA_CHANGES.get(key, (None, None))
        if (first is not None and version < first) or \
                (gone is not None and version >= gone):
            return False
    return True
