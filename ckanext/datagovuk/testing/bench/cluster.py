"""The private PostgreSQL cluster both "hosts" use: URLs of its databases,
statements as its superuser, and the sizes of what the run generated."""
from __future__ import annotations

import time

from ckanext.datagovuk import db

# How long a step waits, before its clock starts, for the autovacuum workers
# that the step before set off (a restore or a migration leaves every table
# to be analyzed) to finish.
AUTOVACUUM_WAIT_LIMIT = 180.0


def libpq_conninfo(url) -> str:
    """A libpq conninfo string for ``url`` (what the remote's pg_dump gets)."""
    url = db.parse(url)
    parts = {"host": url.host, "port": url.port, "dbname": url.database,
             "user": url.username, "password": url.password}
    return " ".join(f"{key}={value}" for key, value in parts.items()
                    if value is not None)


class Cluster:
    """The cluster, reached as its superuser (``admin_url``) and as CKAN's
    user (``ckan_url``)."""

    def __init__(self, admin_url: str, ckan_url: str):
        self.admin_url = admin_url
        self.ckan_url = ckan_url

    def url(self, database: str, admin: bool = False) -> str:
        base = self.admin_url if admin else self.ckan_url
        return db.with_database(base, database).render_as_string(hide_password=False)

    def admin_sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        conn = db.connect(self.url(database, admin=True))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def wait_for_autovacuum(self, limit: float = AUTOVACUUM_WAIT_LIMIT) -> float:
        """Wait until no autovacuum worker runs, ``limit`` seconds at most;
        returns how long it waited."""
        started = time.monotonic()
        while time.monotonic() - started < limit and self.admin_sql(
                "SELECT 1 FROM pg_stat_activity "
                "WHERE backend_type = 'autovacuum worker'"):
            time.sleep(0.5)
        return time.monotonic() - started

    def drop(self, database: str) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def exists(self, database: str) -> bool:
        return bool(self.admin_sql(
            f"SELECT 1 FROM pg_database WHERE datname = '{database}'"))

    def measure_size(self, database: str) -> dict:
        size = {"database_bytes": self.admin_sql(
            f"SELECT pg_database_size('{database}')")[0][0]}
        counts = self.admin_sql(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables "
            "WHERE schemaname = 'public' ORDER BY n_live_tup DESC", database)
        size["rows"] = {name: count for name, count in counts}
        size["total_rows"] = sum(count for _, count in counts)
        return size
