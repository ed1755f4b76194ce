"""A tiny CKAN 2.2 site whose one dataset has a known history, for the
tests of the history conversion (``history/``).

The dataset is given as its STATES, one per revision; :func:`write` turns
them into the rows CKAN 2.2 (vdm) kept: for each versioned object (the
package, each extra, resource, tag and membership) a ``*_revision`` row per
version, valid from the revision that made it until the next change
(``revision_timestamp <= T < expired_timestamp``), a removed object's last
version in state ``deleted``, and the live row as the newest version.  CKAN
2.2's activities (package columns only) are written for every revision but
``NO_ACTIVITY``.  Run on an empty schema built by ``oldsite.build_schema``
at legacy 71 (resources in a resource group) or from 74 on
(``resource.package_id``).
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

FAR_FUTURE = dt.datetime(9999, 12, 31)
NS = uuid.UUID("6f1c1d64-6a55-4b4c-9a55-9d3a1e0b7c11")


def ident(name: str) -> str:
    return str(uuid.uuid5(NS, name))


SITE_USER = "test.ckan.net"
DATASET_ID = ident("dataset")
DATASET_NAME = "road-traffic-counts"
ORG_ID = ident("org")
GROUP_ID = ident("group")
TAG_IDS = {"roads": ident("tag roads"), "transport": ident("tag transport")}
# (user name, fullname, sysadmin, publishes): user_d42 is renamed by 001,
# casual (no publishing membership) is deleted by it.
USERS = (("test.ckan.net", None, True, False),
         ("editor1", "Ed Itor", False, True),
         ("user_d42", "Jane Doe", False, True),
         ("casual", "Casual User", False, False))
BASE = {"name": DATASET_NAME, "title": "Road traffic counts",
        "version": None, "url": "https://www.example.gov.uk/traffic",
        "notes": "Counts of vehicles.", "author": None,
        "author_email": None, "maintainer": "Traffic team",
        "maintainer_email": "traffic@example.gov.uk", "state": "active",
        "license_id": "uk-ogl", "type": "dataset", "owner_org": ORG_ID,
        "private": False}


def _resource(key: str, url: str, description: str, position: int,
              fmt: str = "CSV") -> dict:
    return {"id": ident(f"resource {key}"), "url": url, "format": fmt,
            "description": description, "position": position, "hash": "",
            "name": None, "resource_type": "file", "mimetype": "text/csv",
            "mimetype_inner": None, "size": 1000 + position,
            "last_modified": None, "cache_url": None,
            "cache_last_updated": None, "url_type": None,
            "extras": {"openness_score": "3", "qa": {"stars": position}}}


A1 = _resource("a", "https://www.example.gov.uk/a.csv", "File A", 0)
A2 = dict(A1, url="https://www.example.gov.uk/a-v2.csv",
          description="File A, corrected")
B = _resource("b", "https://www.example.gov.uk/b.csv", "File B", 1)
B0 = dict(B, position=0)

# (author, message, minutes after the first, package fields changed,
# extras, resources, tags, groups)
STATES = [
    ("editor1", "Created dataset", 0, {},
     {"theme-primary": "Transport", "update_frequency": "annual",
      "temporal_coverage-to": "2014"}, [A1], ["roads", "transport"], []),
    ("user_d42", "Added file B", 60 * 24, {},
     {"theme-primary": "Transport", "update_frequency": "annual",
      "temporal_coverage-to": "2015"}, [A1, B], ["roads", "transport"], []),
    ("casual", "Corrected file A", 60 * 48, {"notes": "Counts of all vehicles."},
     {"theme-primary": "Transport", "update_frequency": "annual",
      "temporal_coverage-to": "2015"}, [A2, B], ["roads", "transport"],
     [GROUP_ID]),
    ("editor1", "Removed file A", 60 * 72, {"notes": "Counts of all vehicles."},
     {"theme-primary": "Transport", "update_frequency": "quarterly",
      "temporal_coverage-to": "2015", "contact-name": "Ann Other"}, [B0],
     ["roads", "transport"], [GROUP_ID]),
    ("editor1", "Dropped a tag", 60 * 96,
     {"notes": "Counts of all vehicles.", "title": "Road traffic counts (GB)"},
     {"theme-primary": "Transport", "update_frequency": "quarterly",
      "temporal_coverage-to": "2016", "contact-name": "Ann Other"}, [B0],
     ["transport"], [GROUP_ID]),
]
# The revision CKAN 2.2 wrote no activity for (the conversion adds one).
NO_ACTIVITY = 2
FIRST = dt.datetime(2015, 3, 2, 9, 30, 15, 250000)


def revision_id(number: int) -> str:
    return ident(f"revision {number}")


def revision_time(number: int) -> dt.datetime:
    return FIRST + dt.timedelta(minutes=STATES[number][2])


def activity_id(number: int) -> str:
    return ident(f"activity {number}")


def expected(number: int) -> dict:
    """What the dataset held at revision ``number``: package fields,
    extras, resources (with their extras), tag names, group ids."""
    _author, _message, _minutes, fields, extras, resources, tags, groups = \
        STATES[number]
    package = dict(BASE, **fields)
    return {"package": package, "extras": dict(extras),
            "resources": [dict(r) for r in resources], "tags": list(tags),
            "groups": list(groups)}


def _insert(cursor, table: str, row: dict) -> None:
    columns = ", ".join(f'"{c}"' for c in row)
    cursor.execute(f'INSERT INTO "{table}" ({columns}) VALUES '
                   f'({", ".join(["%s"] * len(row))})', list(row.values()))


def _versioned(cursor, table: str, versions: list) -> None:
    """``versions``: [(revision number, row)], oldest first, each a whole
    row; writes the live row, then the *_revision rows (their
    continuity_id refers to it)."""
    number, row = versions[-1]
    _insert(cursor, table, dict(row, revision_id=revision_id(number)))
    for index, (number, row) in enumerate(versions):
        last = index == len(versions) - 1
        expired = FAR_FUTURE if last else revision_time(versions[index + 1][0])
        _insert(cursor, f"{table}_revision", dict(
            row, revision_id=revision_id(number), continuity_id=row["id"],
            revision_timestamp=revision_time(number),
            expired_timestamp=expired, current=last))


def _history_of(rows_at: list) -> list:
    """[(number, row or None)] per revision -> the versions to write:
    a change, and a disappearance as the last row in state deleted."""
    versions, last = [], None
    for number, row in enumerate(rows_at):
        if row is None and last is not None:
            row = dict(last, state="deleted")
        if row is not None and row != last:
            versions.append((number, row))
        last = row
    return versions


def _columns(cursor, table: str) -> set:
    cursor.execute("SELECT column_name FROM information_schema.columns "
                   "WHERE table_schema = 'public' AND table_name = %s",
                   (table,))
    return {name for (name,) in cursor.fetchall()}


def write(cursor) -> None:
    """The users, the publisher, a group, the tags and the dataset with
    its whole history and CKAN 2.2's activities."""
    users = _users(cursor)
    for number, (author, message, *_rest) in enumerate(STATES):
        _insert(cursor, "revision", {
            "id": revision_id(number), "timestamp": revision_time(number),
            "author": author, "message": message, "state": "active"})
    _groups(cursor, users)
    for name, tag_id in TAG_IDS.items():
        _insert(cursor, "tag", {"id": tag_id, "name": name,
                                "vocabulary_id": None})
    _dataset(cursor)
    _activities(cursor, users)


def _users(cursor) -> dict:
    users = {}
    for name, fullname, sysadmin, _publishes in USERS:
        users[name] = ident(f"user {name}")
        _insert(cursor, "user", {
            "id": users[name], "name": name, "fullname": fullname,
            "email": f"{name}@example.gov.uk" if fullname else None,
            "sysadmin": sysadmin, "state": "active",
            "created": FIRST - dt.timedelta(days=30),
            "password": "x", "apikey": ident(f"key {name}")})
    return users


def _groups(cursor, users: dict) -> None:
    created = FIRST - dt.timedelta(days=10)
    for group_id, name, title, is_org in (
            (ORG_ID, "example-council", "Example Council", True),
            (GROUP_ID, "statistics", "Statistics", False)):
        _versioned(cursor, "group", [(0, {
            "id": group_id, "name": name, "title": title,
            "description": f"About {title}.", "created": created,
            "state": "active", "type": "organization" if is_org else "group",
            "approval_status": "approved", "image_url": "",
            "is_organization": is_org})])
    for name, _fullname, _sysadmin, publishes in USERS:
        if publishes:
            _versioned(cursor, "member", [(0, {
                "id": ident(f"member {name}"), "group_id": ORG_ID,
                "table_id": users[name], "state": "active",
                "table_name": "user", "capacity": "editor"})])


def _dataset(cursor) -> None:
    states = [expected(number) for number in range(len(STATES))]
    _versioned(cursor, "package", _history_of([dict(
        s["package"], id=DATASET_ID,
        metadata_modified=revision_time(n), creator_user_id=ident(
            "user editor1")) for n, s in enumerate(states)]))
    keys = dict.fromkeys(k for s in states for k in s["extras"])
    for key in keys:
        _versioned(cursor, "package_extra", _history_of([
            {"id": ident(f"extra {key}"), "package_id": DATASET_ID,
             "key": key, "value": s["extras"][key], "state": "active"}
            if key in s["extras"] else None for s in states]))
    for tag, tag_id in TAG_IDS.items():
        _versioned(cursor, "package_tag", _history_of([
            {"id": ident(f"package_tag {tag}"), "package_id": DATASET_ID,
             "tag_id": tag_id, "state": "active"}
            if tag in s["tags"] else None for s in states]))
    memberships = [{"id": ident("member dataset org"), "group_id": ORG_ID,
                    "table_id": DATASET_ID, "table_name": "package",
                    "capacity": "organization", "state": "active"}] * len(states)
    _versioned(cursor, "member", _history_of(memberships))
    _versioned(cursor, "member", _history_of([
        {"id": ident("member dataset group"), "group_id": GROUP_ID,
         "table_id": DATASET_ID, "table_name": "package",
         "capacity": "public", "state": "active"}
        if GROUP_ID in s["groups"] else None for s in states]))
    _resources(cursor, states)


def _resources(cursor, states: list) -> None:
    by_group = "resource_group_id" in _columns(cursor, "resource")
    group_id = ident("resource group")
    if by_group:
        _versioned(cursor, "resource_group", [(0, {
            "id": group_id, "package_id": DATASET_ID, "label": "default",
            "sort_order": "", "extras": "{}", "state": "active"})])
    ids = dict.fromkeys(r["id"] for s in states for r in s["resources"])
    for resource_id in ids:
        rows = []
        for number, state in enumerate(states):
            found = [r for r in state["resources"] if r["id"] == resource_id]
            row = None
            if found:
                row = dict(found[0], extras=json.dumps(found[0]["extras"]),
                           state="active", created=FIRST)
                row.update({"resource_group_id": group_id} if by_group
                           else {"package_id": DATASET_ID})
            rows.append(row)
        _versioned(cursor, "resource", _history_of(rows))


def _activities(cursor, users: dict) -> None:
    """CKAN 2.2's own: the package table's columns only (table_dictize)."""
    for number, (author, *_rest) in enumerate(STATES):
        if number == NO_ACTIVITY:
            continue
        package = dict(expected(number)["package"], id=DATASET_ID,
                       revision_id=revision_id(number),
                       metadata_modified=revision_time(number).isoformat(),
                       creator_user_id=ident("user editor1"))
        _insert(cursor, "activity", {
            "id": activity_id(number), "timestamp": revision_time(number),
            "user_id": users[author], "object_id": DATASET_ID,
            "revision_id": revision_id(number),
            "activity_type": "new package" if number == 0
            else "changed package",
            "data": json.dumps({"package": package})})
