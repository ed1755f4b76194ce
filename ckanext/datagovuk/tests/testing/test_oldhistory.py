"""The generator's history (``testing/oldhistory.py``) on a generated old
site, and what ``migrate`` makes of it (real PostgreSQL, CKAN's real
migrations)."""
from __future__ import annotations

import json

import pytest

from ckanext.datagovuk import db
from ckanext.datagovuk.testing import oldhistory, oldsite
from ckanext.datagovuk.tests.conftest import run_sql as query
from ckanext.datagovuk.tests.history.test_rebuild import (
    activity_ini, read_back, run_migrate)

DATASETS = oldsite.MIN_DATASETS


@pytest.fixture(scope="module")
def site(make_module_database):
    url = make_module_database()
    oldsite.generate(url, datasets=DATASETS, harvest=False)
    connection = db.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            counts = oldhistory.counts(cursor)
    finally:
        connection.close()
    return {"url": url, "counts": counts}


def revisions_per_dataset(url: str) -> dict[str, int]:
    return dict(query(url, """
        SELECT c.package_id, count(DISTINCT c.revision_id) FROM (
            SELECT continuity_id AS package_id, revision_id FROM package_revision
            UNION ALL SELECT package_id, revision_id FROM package_extra_revision
        ) c JOIN package p ON p.id = c.package_id GROUP BY c.package_id"""))


def test_one_ckan_22_activity_per_revision(site):
    url = site["url"]
    activities = dict(query(url, """
        SELECT object_id, count(*) FROM activity
        WHERE activity_type IN ('new package', 'changed package',
                                'deleted package')
        GROUP BY object_id"""))
    assert activities == revisions_per_dataset(url)
    assert site["counts"]["most_per_dataset"] >= 4
    assert site["counts"]["mean_per_dataset"] >= 2.5
    for (data,) in query(url, "SELECT data FROM activity "
                              "WHERE activity_type = 'changed package'"):
        package = json.loads(data)["package"]
        assert "resources" not in package and "extras" not in package
        assert {"id", "name", "title", "revision_id", "state"} <= set(package)


def test_values_change_between_versions(site):
    url = site["url"]
    changed_extras = query(url, """
        SELECT count(DISTINCT id) FROM package_extra_revision
        GROUP BY id HAVING count(DISTINCT value) > 1""")
    assert len(changed_extras) >= DATASETS // 2
    changed_files = query(url, """
        SELECT id FROM resource_revision GROUP BY id
        HAVING count(DISTINCT url) > 1""")
    assert changed_files
    added_later = query(url, """
        SELECT r.id FROM resource_revision r
        JOIN package_revision p ON p.continuity_id = (
            SELECT g.package_id FROM resource_group g
            WHERE g.id = r.resource_group_id)
        GROUP BY r.id HAVING min(r.revision_timestamp) > min(p.revision_timestamp)""")
    assert added_later


def test_live_rows_are_the_newest_versions(site):
    url = site["url"]
    assert query(url, """
        SELECT count(*) FROM package_extra x JOIN package_extra_revision e
        ON e.id = x.id AND e.current
        WHERE e.value IS DISTINCT FROM x.value
           OR e.revision_id <> x.revision_id""")[0][0] == 0
    assert query(url, """
        SELECT count(*) FROM resource x JOIN resource_revision r
        ON r.id = x.id AND r.current
        WHERE r.url <> x.url""")[0][0] == 0


def test_migrate_completes_every_generated_activity(site, make_database,
                                                   tmp_path):
    url = make_database(template=site["url"].rsplit("/", 1)[1])
    report = run_migrate(activity_ini(tmp_path), url)
    activities = sum(revisions_per_dataset(site["url"]).values())
    assert report["history"]["completed"] == activities
    assert report["history"]["added"] == 0
    assert report["history"]["left"] == {}
    # Values CKAN 2.12 itself would refuse (a NULL extra, the resource
    # lists 001 deletes, JSON-valued extras) still render as they were.
    known = oldsite.KNOWN_CASES
    for name in (known.null_extra_dataset, known.resource_lists_dataset,
                 known.organogram_central_dataset):
        dataset_id = query(url, "SELECT id FROM package WHERE name = %s",
                           (name,))[0][0]
        read = read_back(url, dataset_id)
        assert len(read["activities"]) >= 2
        for activity in read["activities"]:
            status, page = read["pages"][activity["id"]]
            assert status == 200, (name, page[-2000:])
