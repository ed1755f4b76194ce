"""The old site's history as CKAN 2.12 activities.

CKAN 2.2 kept a dataset's history in the ``*_revision`` tables and wrote,
per revision that changed a dataset, an activity holding only the package
table's columns.  CKAN 2.12 drops the revision tables (107) and
``activity.revision_id`` (093), and its "View this version" and "Changes"
need the whole dataset in ``activity.data['package']``.  So, inside
``migrate``'s transaction, before any data migration (the history shows the
values as they were) and before CKAN's upgrade:

* :func:`rebuild` (``history_sql/rebuild.sql``, set-based) builds each
  dataset as it was at each revision that changed it or its extras,
  resources, tags or memberships, in the shape of CKAN 2.12's
  ``package_show``; completes CKAN 2.2's activity of that revision (its id,
  type and user kept) or adds one; the timestamp is the revision's (UTC);
  the revision's id, author and message go into ``data['datagovuk_revision']``;
* :func:`archive_mapping` keeps activity -> revision in
  ``datagovuk_legacy.activity_revision`` (also with ``--no-history``);

after the data migrations, :func:`map_actors` moves the activities of users
001 deleted to the new site's user (old name kept in the data) and gives
renamed ones their new name; after CKAN's upgrade, :func:`restore_timestamps`
undoes what revision 085 did to the converted activities' timestamps (it
shifts them by the process's UTC offset).  Nothing here commits.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk import runner

SQL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "history_sql")
LICENSES_GUC = "datagovuk.history_licenses"

Progress = Callable[[str], None]


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


def _run_sql(connection: Connection, name: str) -> int:
    """One file of history_sql/ on the caller's transaction, straight to
    psycopg2 (no parameters: '%' stays a literal); the row count of its
    last statement."""
    with open(os.path.join(SQL_DIR, name), encoding="utf-8") as handle:
        sql = handle.read()
    with connection.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.rowcount


def _columns(connection: Connection, table: str) -> set[str]:
    inspector = inspect(connection)
    if not inspector.has_table(table):
        return set()
    return {column["name"] for column in inspector.get_columns(table)}


def has_revisions(connection: Connection) -> bool:
    """Whether the revision tables and activity.revision_id are still
    there (CKAN's 093 and 107 drop them)."""
    return ("revision_id" in _columns(connection, "activity")
            and bool(_columns(connection, "package_revision")))


def licences() -> dict[str, dict]:
    """CKAN's licences as package_show shows them: id -> title, url and
    whether the licence is open (``Package.isopen``)."""
    from ckan.model.license import LicenseRegister

    found = {}
    for licence in LicenseRegister().licenses:
        url = licence.url or None
        title = licence.title.split("::")[-1] if url else licence.title
        found[licence.id] = {"title": title, "url": url,
                             "isopen": bool(licence.isopen())}
    return found


def _scalar(connection: Connection, sql: str) -> int:
    return int(connection.exec_driver_sql(sql).scalar() or 0)


def rebuild(connection: Connection, settings: dict[str, str],
            progress: Optional[Progress] = None) -> HistoryResult:
    """Complete or add one activity per revision of each dataset; the
    users as they are now, for :func:`map_actors`."""
    started = time.monotonic()
    result = HistoryResult()
    runner.apply_settings(connection, {
        runner.SITE_USER_GUC: settings.get(runner.SITE_USER_GUC, ""),
        LICENSES_GUC: json.dumps(licences())})
    _run_sql(connection, "users_before.sql")
    _run_sql(connection, "resources_by_group.sql"
             if "resource_group_id" in _columns(connection,
                                                 "resource_revision")
             else "resources_by_package.sql")
    _run_sql(connection, "rebuild.sql")
    result.datasets = _scalar(
        connection, "SELECT count(DISTINCT package_id) FROM datagovuk_h_version")
    result.revisions = _scalar(connection,
                               "SELECT count(*) FROM datagovuk_h_version")
    for outcome, reason, count in connection.exec_driver_sql(
            "SELECT outcome, coalesce(reason, ''), count(*) "
            "FROM datagovuk_h_outcome GROUP BY 1, 2 ORDER BY 1, 2"):
        if outcome == "completed":
            result.completed = count
        elif outcome == "added":
            result.added = count
        else:
            result.left[reason] = count
    result.seconds = round(time.monotonic() - started, 3)
    if progress:
        progress(f"  {result.revisions} revisions of {result.datasets} "
                 f"datasets: {result.completed} activities completed, "
                 f"{result.added} added, {sum(result.left.values())} left")
    return result


def archive_mapping(connection: Connection, result: HistoryResult,
                    converted: bool) -> None:
    """Keep activity -> revision (and what was done) in the archive."""
    if "revision_id" not in _columns(connection, "activity"):
        return
    if not converted:
        _run_sql(connection, "no_outcome.sql")
    before = _scalar(connection, "SELECT count(*) FROM "
                     "datagovuk_legacy.activity_revision") if inspect(
        connection).has_table("activity_revision",
                              schema="datagovuk_legacy") else 0
    _run_sql(connection, "archive_mapping.sql")
    result.mapping_archived = _scalar(
        connection, "SELECT count(*) FROM datagovuk_legacy.activity_revision"
    ) - before


def map_actors(connection: Connection, result: HistoryResult) -> None:
    """After the data migrations: actors deleted -> the site user, renamed
    -> their new name."""
    _run_sql(connection, "actors.sql")
    deleted = _scalar(connection, "SELECT count(*) FROM "
                      "datagovuk_h_actor_change WHERE new_name IS NULL")
    if _scalar(connection, 'SELECT count(*) FROM "user" WHERE name = '
               "current_setting('datagovuk.site_user', true)"):
        result.actors_deleted = deleted
    else:
        result.actors_unmapped = deleted
    result.actors_renamed = _scalar(
        connection, "SELECT count(*) FROM datagovuk_h_actor_change "
        "WHERE new_name IS NOT NULL")


def restore_timestamps(connection: Connection) -> int:
    """After CKAN's upgrade: the converted activities' timestamps back to
    their revisions' (UTC) whatever 085 did."""
    return _run_sql(connection, "restore_timestamps.sql")
