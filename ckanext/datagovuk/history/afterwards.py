"""The history's steps around the conversion: the activity -> revision
mapping archived (before CKAN's 093 drops it), the actors mapped after 001,
the timestamps restored after CKAN's 085."""
from __future__ import annotations

import time

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ckanext.datagovuk.history.common import (HistoryResult, columns, run_sql,
                                              scalar)


def archive_mapping(connection: Connection, result: HistoryResult,
                    converted: bool) -> None:
    """Keep activity -> revision (and what was done) in the archive."""
    if "revision_id" not in columns(connection, "activity"):
        return
    if not converted:
        run_sql(connection, "no_outcome.sql")
    before = scalar(connection, "SELECT count(*) FROM "
                     "datagovuk_legacy.activity_revision") if inspect(
        connection).has_table("activity_revision",
                              schema="datagovuk_legacy") else 0
    run_sql(connection, "archive_mapping.sql")
    result.mapping_archived = scalar(
        connection, "SELECT count(*) FROM datagovuk_legacy.activity_revision"
    ) - before


def map_actors(connection: Connection, result: HistoryResult) -> None:
    """After the data migrations: actors deleted -> the site user, renamed
    -> their new name.  Its time counts in the history's: it rewrites the
    data of the activities it changes."""
    started = time.monotonic()
    run_sql(connection, "actors.sql")
    deleted = scalar(connection, "SELECT count(*) FROM "
                      "datagovuk_h_actor_change WHERE new_name IS NULL")
    if scalar(connection, 'SELECT count(*) FROM "user" WHERE name = '
               "current_setting('datagovuk.site_user', true)"):
        result.actors_deleted = deleted
    else:
        result.actors_unmapped = deleted
    result.actors_renamed = scalar(
        connection, "SELECT count(*) FROM datagovuk_h_actor_change "
        "WHERE new_name IS NOT NULL")
    result.seconds = round(result.seconds + time.monotonic() - started, 3)


def restore_timestamps(connection: Connection) -> int:
    """After CKAN's upgrade: the converted activities' timestamps back to
    their revisions' (UTC) whatever 085 did: from the times rebuild.sql
    kept when it ran in this transaction, else from each activity's data."""
    known = connection.exec_driver_sql(
        "SELECT to_regclass('pg_temp.datagovuk_h_stamp')").scalar()
    return run_sql(connection, "restore_timestamps_known.sql" if known
                   else "restore_timestamps.sql")
