"""Realistic history for a generated old site: run after
``oldsite.populate`` (``oldhistory.sql`` says what it adds).

    python -m ckanext.datagovuk.testing.oldhistory URL

Its hook: ``populate`` (or ``generate``) of the generator, right after the
rows are loaded, so that templates, dumps and the benchmark carry it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

from ckanext.datagovuk import db

SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "oldhistory.sql")


def add_history(cursor) -> dict[str, int]:
    """Add the history on ``cursor``'s transaction; the number of dataset
    activities and of revisions per dataset at most and on average."""
    with open(SQL, encoding="utf-8") as handle:
        cursor.execute(handle.read())
    cursor.execute("""
        SELECT coalesce(sum(n), 0), coalesce(max(n), 0), coalesce(avg(n), 0)
        FROM (SELECT object_id, count(*) AS n FROM activity
              WHERE activity_type IN ('new package', 'changed package',
                                      'deleted package')
              GROUP BY object_id) a""")
    activities, most, mean = cursor.fetchone()
    cursor.execute("ANALYZE")
    return {"activities": activities, "most_per_dataset": most,
            "mean_per_dataset": round(float(mean), 2)}


def add_history_to(url) -> dict[str, int]:
    connection = db.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            return add_history(cursor)
    finally:
        connection.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="database of a generated old site")
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = add_history_to(args.url)
    print(f"history: {counts} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
