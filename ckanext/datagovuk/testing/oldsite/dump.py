"""The generated site as others read it: a custom-format dump, and a
checksum of its content."""
from __future__ import annotations

import subprocess
from typing import Iterable, Optional

from psycopg2 import sql

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError

from .schema import read_sql


def write_dump(url, path: str) -> None:
    """A custom-format dump of the site as the old operators would make it:
    no owners, no privileges."""
    result = subprocess.run(
        ["pg_dump", "-Fc", "-O", "-x", "-f", path],
        env=db.libpq_env(url), capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise OperatorError(f"pg_dump of {db.safe_url(url)} failed: "
                            f"{message[0] if message else result.returncode}")


def content_checksum(url, tables: Optional[Iterable[str]] = None) -> str:
    """One md5 over every row of every (or the given) public table, each
    table's rows sorted: equal for equal content."""
    connection = db.connect(url)
    try:
        with connection.cursor() as cursor:
            if tables is None:
                cursor.execute("SELECT tablename FROM pg_tables WHERE "
                               "schemaname = 'public' ORDER BY tablename")
                tables = [row[0] for row in cursor.fetchall()]
            digests = []
            digest = read_sql("table_digest.sql")
            for table in tables:
                cursor.execute(sql.SQL(digest).format(
                    table=sql.Identifier(table)))
                digests.append(f"{table}:{cursor.fetchone()[0]}")
            cursor.execute("SELECT md5(%s)", ("\n".join(digests),))
            return cursor.fetchone()[0]
    finally:
        connection.close()
