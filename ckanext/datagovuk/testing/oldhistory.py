"""Realistic history for a generated old site (``oldhistory.sql`` says
what it adds): ``oldsite.populate`` runs it last, in its transaction, so
that test templates, dumps and the benchmark carry it.
"""
from __future__ import annotations

import os

SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "oldhistory.sql")


def add_history(cursor) -> dict[str, int]:
    """Add the history on ``cursor``'s transaction (once: populate's);
    what :func:`counts` says."""
    with open(SQL, encoding="utf-8") as handle:
        cursor.execute(handle.read())
    cursor.execute("ANALYZE")
    return counts(cursor)


def counts(cursor) -> dict[str, int]:
    """The number of dataset activities and of revisions per dataset at
    most and on average."""
    cursor.execute("""
        SELECT coalesce(sum(n), 0), coalesce(max(n), 0), coalesce(avg(n), 0)
        FROM (SELECT object_id, count(*) AS n FROM activity
              WHERE activity_type IN ('new package', 'changed package',
                                      'deleted package')
              GROUP BY object_id) a""")
    activities, most, mean = cursor.fetchone()
    return {"activities": activities, "most_per_dataset": most,
            "mean_per_dataset": round(float(mean), 2)}
