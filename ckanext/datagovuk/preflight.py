"""What the database is, and whether it can be migrated at all.

:func:`classify` says what a database is (legacy sqlalchemy-migrate version,
alembic revision, empty, not CKAN) and :func:`check` refuses, with one line,
what cannot work.  Nothing here changes the database.

The traps of CKAN's upgrade (what would make it fail on this data) are
found and fixed by :mod:`traps`.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk import alembic_runner, archive, db
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
    if not tables:
        return DatabaseState("empty", head=alembic_runner.head())
    return state_of(tables, alembic_runner.current_revision(connection),
                    ckan_legacy_version(connection))


def state_of(tables: list[str], revision: Optional[str],
             legacy: Optional[int]) -> DatabaseState:
    """What a database is, from its public tables, its alembic revision
    and CKAN's legacy version, wherever they were read (here, or on the
    old host before a transfer)."""
    head = alembic_runner.head()
    if not tables:
        return DatabaseState("empty", head=head)
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


def refusal(state: DatabaseState, pending_migrations: Iterable[str] = (),
            where: str = "", data_migrations: bool = True) -> Optional[str]:
    """Why ``migrate`` cannot run on the database ``state`` describes (one
    line), or None; with ``data_migrations=False`` the pending ones will be
    skipped, so need no CKAN 2.2 tables."""
    where = f" {where}" if where else ""
    if state.kind == "empty":
        return (f"the database{where} is empty: import the old site's dump "
                "first (datagovuk import), or use `ckan db init` for a new "
                "site")
    if state.kind == "not-ckan":
        tables = ", ".join(state.tables[:5]) + \
            (", ..." if len(state.tables) > 5 else "")
        return (f"the database{where} is not a CKAN database (no "
                "migrate_version or alembic_version with package and user "
                f"tables; it has {tables})")
    if state.kind == "legacy" and not (
            1 <= state.legacy_version <= alembic_runner.LAST_LEGACY_VERSION):
        return (f"the database{where} says it is at legacy sqlalchemy-migrate "
                f"version {state.legacy_version}, which no CKAN had (they "
                f"run from 1 to {alembic_runner.LAST_LEGACY_VERSION}): check "
                "migrate_version")
    if data_migrations:
        return data_migrations_blocked(state, pending_migrations)
    return None


def check(connection: Connection, pending_migrations: Iterable[str] = (),
          url: Optional[str] = None,
          data_migrations: bool = True) -> DatabaseState:
    """Classify the database and refuse what cannot work (:func:`refusal`,
    then the extensions this server lacks)."""
    state = classify(connection)
    refused = refusal(state, pending_migrations,
                      db.safe_url(url) if url else "", data_migrations)
    if refused:
        raise OperatorError(refused)
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
