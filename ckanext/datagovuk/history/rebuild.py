"""The conversion itself (``sql/rebuild.sql``, set-based): each dataset as
it was at each revision that changed it, written into the activity of that
revision (CKAN 2.2's completed, or one added)."""
from __future__ import annotations

import json
import time
from typing import Callable, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk import runner
from ckanext.datagovuk.history.common import (HistoryResult, columns, run_sql,
                                              scalar)

LICENSES_GUC = "datagovuk.history_licenses"

Progress = Callable[[str], None]


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


def rebuild(connection: Connection, settings: dict[str, str],
            progress: Optional[Progress] = None) -> HistoryResult:
    """Complete or add one activity per revision of each dataset; the
    users as they are now, for :func:`map_actors`."""
    started = time.monotonic()
    result = HistoryResult()
    runner.apply_settings(connection, {
        runner.SITE_USER_GUC: settings.get(runner.SITE_USER_GUC, ""),
        LICENSES_GUC: json.dumps(licences())})
    run_sql(connection, "users_before.sql")
    run_sql(connection, "resources_by_group.sql"
             if "resource_group_id" in columns(connection,
                                                 "resource_revision")
             else "resources_by_package.sql")
    run_sql(connection, "rebuild.sql")
    result.datasets = scalar(
        connection, "SELECT count(DISTINCT package_id) FROM datagovuk_h_version")
    result.revisions = scalar(connection,
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
