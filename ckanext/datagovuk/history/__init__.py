"""The old site's history as CKAN 2.12 activities.

CKAN 2.2 kept a dataset's history in the ``*_revision`` tables and wrote,
per revision that changed a dataset, an activity holding only the package
table's columns.  CKAN 2.12 drops the revision tables (107) and
``activity.revision_id`` (093), and its "View this version" and "Changes"
need the whole dataset in ``activity.data['package']``.  So, inside
``migrate``'s transaction, before any data migration (the history shows the
values as they were) and before CKAN's upgrade:

* :func:`rebuild` (:mod:`.rebuild`, ``sql/rebuild.sql``, set-based) builds
  each dataset as it was at each revision that changed it or its extras,
  resources, tags or memberships, in the shape of CKAN 2.12's
  ``package_show``; completes CKAN 2.2's activity of that revision (its id,
  type and user kept) or adds one; the timestamp is the revision's (UTC);
  the revision's id, author and message go into ``data['datagovuk_revision']``;
* :func:`archive_mapping` (:mod:`.afterwards`, like the two below) keeps
  activity -> revision in ``datagovuk_legacy.activity_revision`` (also with
  ``--no-history``);

after the data migrations, :func:`map_actors` moves the activities of users
001 deleted to the new site's user (old name kept in the data) and gives
renamed ones their new name; after CKAN's upgrade, :func:`restore_timestamps`
undoes what revision 085 did to the converted activities' timestamps (it
shifts them by the process's UTC offset).  Nothing here commits.
:mod:`.common` holds what the steps share.
"""
from ckanext.datagovuk.history.afterwards import (archive_mapping,
                                                  map_actors,
                                                  restore_timestamps)
from ckanext.datagovuk.history.common import HistoryResult, has_revisions
from ckanext.datagovuk.history.rebuild import licences, rebuild

__all__ = ["HistoryResult", "archive_mapping", "has_revisions", "licences",
           "map_actors", "rebuild", "restore_timestamps"]
