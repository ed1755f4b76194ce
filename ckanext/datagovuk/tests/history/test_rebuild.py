"""The old site's revisions as CKAN 2.12 activities (``history/``), end to
end: a CKAN 2.2 site with one dataset of known history
(``testing/historysite.py``) goes through ``migrate`` with the ``activity``
plugin (real PostgreSQL, CKAN's real migrations); then a CKAN process of its
own (activity plugin on, the harness's real Solr) reads it back through
``package_show``, ``activity_show``, ``activity_diff`` and the "View this
version" page."""
from __future__ import annotations

import json
import os
import re
import textwrap

import pytest

from ckanext.datagovuk import db
from ckanext.datagovuk.testing import historysite as site
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, dump_database, run_command)
from ckanext.datagovuk.tests.conftest import run_sql as query

REVISIONS = len(site.STATES)


def build_site(url: str, version: int = 71) -> None:
    oldsite.build_schema(url, harvest=False, version=version)
    connection = db.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            site.write(cursor)
    finally:
        connection.close()


def activity_ini(directory) -> str:
    """test.ini with the activity plugin enabled."""
    lines = [line for line in open(TEST_INI).read().splitlines()
             if not line.startswith("ckan.plugins")]
    at = lines.index("[app:main]") + 1
    lines.insert(at, "ckan.plugins = activity")
    path = os.path.join(str(directory), "activity.ini")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ini(tmp_path_factory) -> str:
    return activity_ini(tmp_path_factory.mktemp("history"))


def run_migrate(ini: str, url: str, *args: str,
                zone: str | None = None) -> dict:
    """``ckan datagovuk migrate --json`` with the activity plugin, in a
    process of its own (its local time zone ``zone``); the report."""
    result = run_command(
        ["ckan", "-c", ini, "datagovuk", "migrate", "--json",
         "--resolve-email-clash", "keep-oldest", *args], db_url=url,
        env={"TZ": zone} if zone else None)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


READ_SCRIPT = textwrap.dedent("""
    import json, sys
    from ckan.cli import load_config
    from ckan.config.middleware import make_app
    import ckan.plugins.toolkit as toolkit
    config = load_config(sys.argv[1])
    config["ckan.plugins"] = "activity"
    config["ckan.auth.public_activity_stream_detail"] = "true"
    app = make_app(config)
    dataset_id = sys.argv[2]
    site_user = {"ignore_auth": True, "user": sys.argv[3]}
    out = {}
    with app._wsgi_app.test_request_context():
        out["package"] = toolkit.get_action("package_show")(
            dict(site_user), {"id": dataset_id})
        stream = toolkit.get_action("package_activity_list")(
            dict(site_user), {"id": dataset_id,
                              "include_hidden_activity": True, "limit": 100})
        out["activities"] = [toolkit.get_action("activity_show")(
            dict(site_user), {"id": a["id"], "include_data": True})
            for a in reversed(stream)]
        out["diffs"] = {}
        for a in out["activities"][1:]:
            out["diffs"][a["id"]] = toolkit.get_action("activity_diff")(
                dict(site_user), {"id": a["id"], "object_type": "package",
                                  "diff_type": "unified"})["diff"]
    client = app.test_client()
    out["pages"] = {}
    for a in out["activities"]:
        # By name: by id, the page redirects to the name on ckan.site_url.
        reply = client.get(
            f"/dataset/{out['package']['name']}/history/{a['id']}")
        out["pages"][a["id"]] = [reply.status_code,
                                 reply.get_data(as_text=True)]
    print(json.dumps(out, default=str))
""")


def read_back(url: str, dataset_id: str = site.DATASET_ID) -> dict:
    """package_show, the stream (oldest first, hidden activities too),
    activity_show, activity_diff and the "View this version" pages of a
    dataset, from a CKAN process with the activity plugin."""
    result = run_command(["python", "-c", READ_SCRIPT, TEST_INI,
                          dataset_id, site.SITE_USER], db_url=url)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module", params=["UTC", "process TZ", "server TZ"])
def migrated(request, make_module_database, pg_admin_url, ini):
    """The history site after migrate: plainly; with the migrate process in
    Europe/London; with the PostgreSQL server's time zone Europe/London."""
    url = make_module_database()
    build_site(url)
    if request.param == "server TZ":
        name = db.parse(url).database
        query(pg_admin_url.rsplit("/", 1)[0] + "/postgres",
              f"ALTER DATABASE \"{name}\" SET timezone = 'Europe/London'")
    report = run_migrate(
        ini, url, zone="Europe/London" if request.param == "process TZ"
        else None)
    return {"url": url, "report": report, "read": read_back(url)}


def users(url: str) -> dict:
    return {name: user_id for user_id, name in
            query(url, 'SELECT id, name FROM "user"')}


def test_report_counts_completed_added_and_left(migrated):
    history = migrated["report"]["history"]
    assert history["revisions"] == REVISIONS and history["datasets"] == 1
    assert (history["completed"], history["added"]) == (REVISIONS - 1, 1)
    assert history["left"] == {}
    assert history["mapping_archived"] == REVISIONS


def test_one_activity_per_revision_with_its_time_and_ids(migrated):
    activities = migrated["read"]["activities"]
    assert len(activities) == REVISIONS
    for number, activity in enumerate(activities):
        assert activity["timestamp"] == site.revision_time(number).isoformat()
        revision = activity["data"]["datagovuk_revision"]
        assert revision["id"] == site.revision_id(number)
        assert revision["author"] == site.STATES[number][0]
        assert revision["message"] == site.STATES[number][1]
        if number != site.NO_ACTIVITY:
            assert activity["id"] == site.activity_id(number)
        assert activity["activity_type"] == (
            "new package" if number == 0 else "changed package")


def test_actors_mapped_through_001(migrated):
    url, activities = migrated["url"], migrated["read"]["activities"]
    now = users(url)
    assert "casual" not in now and "user_d42" not in now
    by_author = {site.STATES[n][0]: a for n, a in enumerate(activities)}
    deleted = by_author["casual"]
    assert deleted["user_id"] == now[site.SITE_USER]
    assert deleted["data"]["actor"] == "casual"
    assert deleted["data"]["datagovuk_deleted_actor"]["name"] == "casual"
    renamed = by_author["user_d42"]
    assert renamed["user_id"] == site.ident("user user_d42")
    assert renamed["data"]["actor"] == [
        name for name, uid in now.items() if uid == renamed["user_id"]][0]
    assert by_author["editor1"]["user_id"] == now["editor1"]


RESOURCE_FIELDS = ("id", "url", "format", "description", "position", "hash",
                   "name", "resource_type", "mimetype", "mimetype_inner",
                   "size", "last_modified", "cache_url",
                   "cache_last_updated", "url_type")


def test_each_version_holds_exactly_the_values_of_its_revision(migrated):
    for number, activity in enumerate(migrated["read"]["activities"]):
        shown, want = activity["data"]["package"], site.expected(number)
        for key, value in want["package"].items():
            assert shown[key] == value, (number, key)
        assert shown["id"] == site.DATASET_ID
        assert shown["metadata_modified"] == \
            site.revision_time(number).isoformat()
        assert {e["key"]: e["value"] for e in shown["extras"]} == \
            want["extras"]
        assert [r["id"] for r in shown["resources"]] == \
            [r["id"] for r in want["resources"]]
        for got, resource in zip(shown["resources"], want["resources"]):
            for key in RESOURCE_FIELDS:
                assert got[key] == resource[key], (number, key)
            for key, value in resource["extras"].items():
                assert got[key] == value
            assert got["package_id"] == site.DATASET_ID
        assert [t["name"] for t in shown["tags"]] == want["tags"]
        assert shown["num_tags"] == len(want["tags"])
        assert shown["num_resources"] == len(want["resources"])
        assert [g["id"] for g in shown["groups"]] == want["groups"]
        assert shown["organization"]["id"] == site.ORG_ID
        assert shown["organization"]["title"] == "Example Council"


# What 001 changes on the live dataset: the tags go, theme-primary's title
# becomes a slug.  The history keeps the values as they were.
CHANGED_BY_001 = {"tags", "num_tags", "extras"}


def test_newest_version_equals_package_show(migrated):
    newest = migrated["read"]["activities"][-1]["data"]["package"]
    live = migrated["read"]["package"]
    assert set(newest) == set(live)
    for key in set(live) - CHANGED_BY_001:
        assert newest[key] == live[key], key
    extras = {e["key"]: e["value"] for e in newest["extras"]}
    assert extras.pop("theme-primary") == "Transport"
    live_extras = {e["key"]: e["value"] for e in live["extras"]}
    assert live_extras.pop("theme-primary") == "transport"
    assert extras == live_extras
    assert live["tags"] == [] and [t["name"] for t in newest["tags"]] == \
        ["transport"]


def test_view_this_version_renders_each_version(migrated):
    read = migrated["read"]
    for number, activity in enumerate(read["activities"]):
        status, page = read["pages"][activity["id"]]
        assert status == 200, (number, page[-2000:])
        for resource in site.expected(number)["resources"]:
            assert resource["description"] in page


# The lines activity_diff must change between revision N-1 and N (beyond
# metadata_modified), as regular expressions over the changed lines.
DIFF_LINES = {
    1: [r'"value": "201[45]"', r'"num_resources": [12]',
        r"b\.csv|File B|resource b|" + site.ident("resource b")],
    2: [r'"notes"', r'a(-v2)?\.csv', r'File A(, corrected)?', r'"groups"',
        r"statistics|Statistics|" + site.GROUP_ID],
    3: [r'"update_frequency"|"value": "(annual|quarterly)"',
        r'"contact-name"|"Ann Other"', r"a-v2\.csv|File A",
        r'"position": [01]', r'"num_resources": [12]'],
    4: [r'"roads"', r'"num_tags": [12]', r'"title": "Road traffic counts',
        r'"value": "201[56]"'],
}
ALWAYS = [r'"metadata_modified"']


def changed_lines(diff: str) -> list[str]:
    return [line[1:] for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_changes_show_exactly_what_each_revision_changed(migrated):
    read = migrated["read"]
    for number, activity in enumerate(read["activities"][1:], start=1):
        lines = changed_lines(read["diffs"][activity["id"]])
        assert lines, number
        for pattern in DIFF_LINES[number]:
            assert any(re.search(pattern, line) for line in lines), \
                (number, pattern)


def test_mapping_archived_before_093(migrated):
    rows = query(migrated["url"], """
        SELECT activity_id, revision_id, history
        FROM datagovuk_legacy.activity_revision ORDER BY revision_id""")
    assert {(r[1], r[2]) for r in rows} == {
        (site.revision_id(n), "added" if n == site.NO_ACTIVITY
         else "completed") for n in range(REVISIONS)}


def test_rerun_changes_nothing(migrated, ini):
    url = migrated["url"]
    before = dump_database(url, "--data-only")
    run_migrate(ini, url)
    assert dump_database(url, "--data-only") == before


@pytest.fixture
def history_site(make_database):
    url = make_database()
    build_site(url)
    return url


def test_dry_run_leaves_everything(history_site, ini):
    before = dump_database(history_site)
    report = run_migrate(ini, history_site, "--dry-run")
    assert report["history"]["added"] == 1
    assert dump_database(history_site) == before


def test_no_history_leaves_the_activities_and_archives_the_mapping(
        history_site, ini):
    report = run_migrate(ini, history_site, "--no-history")
    assert report["history"]["skipped"]
    datas = query(history_site, "SELECT data FROM activity "
                                "WHERE object_id = %s", (site.DATASET_ID,))
    assert len(datas) == REVISIONS - 1
    assert all("resources" not in json.loads(d)["package"] for (d,) in datas)
    assert {row[0] for row in query(
        history_site, "SELECT history FROM "
                      "datagovuk_legacy.activity_revision")} == \
        {"not converted"}


def test_from_legacy_74_resources_reach_their_dataset_directly(
        make_database, ini):
    url = make_database()
    build_site(url, version=74)
    history = run_migrate(ini, url, "--no-data-migrations")["history"]
    assert (history["completed"], history["added"]) == (REVISIONS - 1, 1)
    rows = query(url, "SELECT data FROM activity WHERE object_id = %s "
                      "ORDER BY timestamp", (site.DATASET_ID,))
    resources = [[r["id"] for r in json.loads(d)["package"]["resources"]]
                 for (d,) in rows]
    assert resources == [[r["id"] for r in site.expected(n)["resources"]]
                         for n in range(REVISIONS)]


def test_report_text_gives_counts_and_why_activities_were_left():
    from ckanext.datagovuk import history, migrate_report

    result = history.HistoryResult(
        datasets=2, revisions=7, completed=5, added=2,
        left={"it names no revision": 1}, actors_deleted=3,
        actors_unmapped=0, mapping_archived=6, seconds=0.4)
    text = "\n".join(migrate_report._history_lines(result))
    assert "7 revisions of 2 datasets" in text
    assert "5 of CKAN 2.2's activities completed, 2 added, 1 left" in text
    assert "left 1: it names no revision" in text
    assert "3 activities of deleted users moved to the site user" in text
    assert "mapping of 6 activities archived" in text
    skipped = history.HistoryResult(skipped="--no-history: nothing")
    assert migrate_report._history_lines(skipped) == [
        "History: --no-history: nothing"]


def activities(url: str) -> list:
    return query(url, "SELECT id, timestamp, user_id, activity_type, data "
                      "FROM activity ORDER BY id")


def test_skip_upgrade_then_upgrade_gives_the_same_activities(
        migrated, make_database, ini):
    """The data migrations committed in one run (--skip-upgrade), CKAN's
    upgrade in a later one: the history is built in the first, from the
    site as it was, and its timestamps survive 085 in the second."""
    url = make_database()
    build_site(url)
    first = run_migrate(ini, url, "--skip-upgrade")
    assert first["history"]["completed"] == REVISIONS - 1
    second = run_migrate(ini, url, zone="Europe/London")
    assert second["history"]["completed"] == 0
    assert second["history"]["left"] == {
        "its data already holds the whole dataset": REVISIONS}
    assert activities(url) == activities(migrated["url"])
