"""The manifest: what the old site held that the move must preserve,
recorded by ``migrate`` before the archive's copy and the data migrations
(``manifest.sql``), and read back by ``verify``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk import runner
from ckanext.datagovuk.errors import OperatorError

MANIFEST_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "manifest.sql")
TABLE = "datagovuk.manifest"


@dataclass(frozen=True)
class Manifest:
    """The manifest's own row: when it was taken and what ``migrate`` was
    told then."""
    taken_at: object
    pending: tuple[str, ...]
    archive: bool
    keep_sysadmins: tuple[str, ...]
    organogram_base_url: Optional[str]
    site_user: Optional[str]


def exists(connection: Connection) -> bool:
    return bool(connection.exec_driver_sql(
        f"SELECT to_regclass('{TABLE}') IS NOT NULL").scalar())


def take(connection: Connection, settings: Mapping[str, str],
         pending: Iterable[str], archive_tables: Iterable[str],
         archive: bool) -> bool:
    """Record the manifest in the caller's transaction, unless one exists
    (taken by an earlier run, before its data migrations); whether it was
    taken now.  ``settings``: the data migrations' GUCs."""
    if exists(connection):
        return False
    runner.apply_settings(connection, {
        **settings,
        "datagovuk.manifest_pending": ",".join(pending),
        "datagovuk.manifest_archive": "on" if archive else "off",
        "datagovuk.manifest_archive_tables": ",".join(archive_tables)})
    with open(MANIFEST_FILE, encoding="utf-8") as handle:
        runner.execute_script(connection, handle.read(), "the manifest")
    return True


def load(connection: Connection) -> Manifest:
    """The manifest's row; refuses (one line) a database without one."""
    if not exists(connection):
        raise OperatorError(
            "this database has no manifest (datagovuk.manifest): it was not "
            "migrated by `datagovuk migrate`, or by a version before verify "
            "existed; nothing to verify against")
    row = connection.exec_driver_sql(
        f"SELECT taken_at, pending, archive, keep_sysadmins, "
        f"organogram_base_url, site_user FROM {TABLE}").one()
    return Manifest(row[0], tuple(row[1]), row[2], tuple(row[3]), row[4],
                    row[5])
