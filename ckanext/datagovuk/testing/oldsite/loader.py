"""Bulk loading: rows buffered per table as COPY text and copied in
foreign-key order, only the tables and columns the schema's legacy version
has."""
from __future__ import annotations

import datetime as dt
import io
import time

from psycopg2 import sql

from .known import LEGACY_VERSION
from .progress import Progress
from .schema import in_schema


def _needs_escape(value: str) -> bool:
    return "\\" in value or "\t" in value or "\n" in value or "\r" in value


def copy_text(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        if _needs_escape(value):
            return (value.replace("\\", "\\\\").replace("\t", "\\t")
                    .replace("\n", "\\n").replace("\r", "\\r"))
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


_VDM_COLUMNS = ("continuity_id", "expired_id", "revision_timestamp",
                "expired_timestamp", "current")

# Tables in an order that satisfies every foreign key: a parent's rows are
# always copied before its children's.
COLUMNS = {
    "revision": ("id", "timestamp", "author", "message", "state",
                 "approved_timestamp"),
    "user": ("id", "name", "apikey", "created", "about", "openid", "password",
             "fullname", "email", "reset_key", "sysadmin",
             "activity_streams_email_notifications", "state"),
    "group": ("id", "name", "title", "description", "created", "state",
              "revision_id", "type", "approval_status", "image_url",
              "is_organization"),
    "group_revision": (),
    "group_extra": ("id", "group_id", "key", "value", "state", "revision_id"),
    "group_extra_revision": (),
    "member": ("id", "group_id", "table_id", "state", "revision_id",
               "table_name", "capacity"),
    "member_revision": (),
    "tag": ("id", "name", "vocabulary_id"),
    "package": ("id", "name", "title", "version", "url", "notes", "author",
                "author_email", "maintainer", "maintainer_email",
                "revision_id", "state", "license_id", "type", "owner_org",
                "private", "metadata_modified", "creator_user_id",
                "metadata_created"),
    "package_revision": (),
    "package_extra": ("id", "key", "value", "revision_id", "state",
                      "package_id"),
    "package_extra_revision": (),
    "package_tag": ("id", "revision_id", "state", "package_id", "tag_id"),
    "package_tag_revision": (),
    "resource_group": ("id", "package_id", "label", "sort_order", "extras",
                       "state", "revision_id"),
    "resource_group_revision": (),
    "resource": ("id", "url", "format", "description", "position",
                 "revision_id", "hash", "state", "resource_group_id",
                 "extras", "name", "resource_type", "mimetype",
                 "mimetype_inner", "size", "last_modified", "cache_url",
                 "cache_last_updated", "webstore_url",
                 "webstore_last_updated", "created", "url_type",
                 "package_id"),
    "resource_revision": (),
    "resource_view": ("id", "resource_id", "title", "description",
                      "view_type", "order", "config"),
    "package_relationship": ("id", "subject_package_id", "object_package_id",
                             "type", "comment", "revision_id", "state"),
    "package_relationship_revision": (),
    "authorization_group": ("id", "name", "created"),
    "authorization_group_user": ("authorization_group_id", "user_id", "id"),
    "user_object_role": ("id", "user_id", "context", "role",
                         "authorized_group_id"),
    "package_role": ("user_object_role_id", "package_id"),
    "group_role": ("user_object_role_id", "group_id"),
    "system_role": ("user_object_role_id",),
    "authorization_group_role": ("user_object_role_id",
                                 "authorization_group_id"),
    "rating": ("id", "user_id", "user_ip_address", "rating", "created",
               "package_id"),
    "dashboard": ("user_id", "activity_stream_last_viewed", "email_last_sent"),
    "user_following_user": ("follower_id", "object_id", "datetime"),
    "user_following_dataset": ("follower_id", "object_id", "datetime"),
    "user_following_group": ("follower_id", "object_id", "datetime"),
    "activity": ("id", "timestamp", "user_id", "object_id", "revision_id",
                 "activity_type", "data"),
    "activity_detail": ("id", "activity_id", "object_id", "object_type",
                        "activity_type", "data"),
    "related": ("id", "type", "title", "description", "image_url", "url",
                "created", "owner_id", "view_count", "featured"),
    "related_dataset": ("id", "dataset_id", "related_id", "status"),
    "system_info": ("id", "key", "value", "revision_id"),
    "system_info_revision": ("id", "key", "value", "revision_id",
                             "continuity_id"),
    "task_status": ("id", "entity_id", "entity_type", "task_type", "key",
                    "value", "state", "error", "last_updated"),
    "tracking_summary": ("url", "package_id", "tracking_type", "count",
                         "running_total", "recent_views", "tracking_date"),
    "data_cache": ("id", "object_id", "key", "value", "created"),
    "publisher_request": ("id", "user_name", "group_name", "reason",
                          "date_of_request", "date_of_decision", "decision",
                          "login_token"),
    "schema": ("id", "url", "title"),
    "codelist": ("id", "url", "title"),
    "commitment": ("id", "source", "commitment_text", "notes", "dataset",
                   "publisher", "author", "dataset_name", "created", "state"),
    "harvest_source": ("id", "name", "url", "title", "description", "config",
                       "created", "type", "active", "user_id", "publisher_id",
                       "frequency", "next_run"),
    "harvest_job": ("id", "created", "gather_started", "gather_finished",
                    "finished", "source_id", "status"),
    "harvest_gather_error": ("id", "harvest_job_id", "message", "created"),
    "harvest_object": ("id", "guid", "current", "gathered", "fetch_started",
                       "content", "fetch_finished", "import_started",
                       "import_finished", "state", "metadata_modified_date",
                       "retry_times", "harvest_job_id", "harvest_source_id",
                       "package_id", "report_status"),
    "harvest_object_extra": ("id", "harvest_object_id", "key", "value"),
    "harvest_object_error": ("id", "harvest_object_id", "message", "stage",
                             "line", "created"),
    "harvest_coupled_resource": ("id", "service_record_package_id",
                                 "harvest_source_reference",
                                 "dataset_record_package_id"),
}
for _table in list(COLUMNS):
    if _table.endswith("_revision") and not COLUMNS[_table]:
        COLUMNS[_table] = COLUMNS[_table[:-len("_revision")]] + _VDM_COLUMNS
del _table


class Loader:
    """Rows buffered per table as COPY text, copied in foreign-key order.
    Callers flush only between whole units (a dataset with all its rows),
    so no child is ever copied before its parent.  Rows are given with
    every column of ``COLUMNS``; only the tables and columns the legacy
    schema at ``version`` has are copied (``SCHEMA_CHANGES``)."""

    flush_rows = 100_000

    def __init__(self, cursor, progress: Progress,
                 version: int = LEGACY_VERSION):
        self.cursor = cursor
        self.progress = progress
        self.columns = {
            table: [c for c in columns if in_schema(version, table, c)]
            for table, columns in COLUMNS.items()
            if in_schema(version, table)}
        # Positions of the copied columns where some are left out.
        self.kept = {
            table: [COLUMNS[table].index(c) for c in columns]
            for table, columns in self.columns.items()
            if len(columns) < len(COLUMNS[table])}
        self.buffers = {table: [] for table in self.columns}
        self.counts = {table: 0 for table in COLUMNS}
        self.seconds = {table: 0.0 for table in COLUMNS}
        self.pending = 0

    def has(self, table: str) -> bool:
        return table in self.columns

    def add(self, table: str, *values) -> None:
        if table not in self.buffers:
            return
        kept = self.kept.get(table)
        if kept is not None:
            values = [values[index] for index in kept]
        self.buffers[table].append("\t".join([copy_text(v) for v in values]))
        self.pending += 1

    def maybe_flush(self) -> None:
        if self.pending >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        for table, rows in self.buffers.items():
            if not rows:
                continue
            started = time.monotonic()
            buffer = io.StringIO("\n".join(rows) + "\n")
            columns = sql.SQL(", ").join(map(sql.Identifier, self.columns[table]))
            self.cursor.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), columns), buffer)
            self.counts[table] += len(rows)
            self.seconds[table] += time.monotonic() - started
            rows.clear()
        self.pending = 0
