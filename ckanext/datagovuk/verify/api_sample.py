"""CKAN's own API asked, in this process, for a sample of what the
manifest holds: ``package_show`` for datasets chosen at random (with a
seed, so the same sample can be asked for again) and every dataset a trap
fix touched, ``organization_show`` for a tenth as many of their
publishers, ``user_show`` for a tenth as many users (``--all``: every
one).  Each must be served (CKAN 2.12 validates what it
shows) with the values the rules expect.  Needs CKAN's model bound to the
verified database and a request context; no Solr (no dataset counts).

The sample is chosen in the caller's transaction, then asked for in
chunks spread over forked workers (:mod:`ckanext.datagovuk.forked`), each
reading the manifest rows of its chunk on a connection of its own; the
chunks' results are merged in their order, so the report is the same
whatever the number of workers."""
from __future__ import annotations

import contextlib
import hashlib
import random
from typing import Callable, Iterator, Optional

from ckanext.datagovuk import batched_show, db, forked, output
from ckanext.datagovuk.errors import Interrupted
from ckanext.datagovuk.verify import rules
from ckanext.datagovuk.verify.checks import (
    ABSENT, DIFFERENCES_KEPT, CheckResult, Context)

NAME = "API sample"
WHAT = ("datasets, publishers and users served by package_show, "
        "organization_show, user_show")
# Publishers and users asked for: one per this many sampled datasets.
PER_DATASETS = 10
# Records asked for per task handed to a worker: small enough to spread
# the sample evenly, large enough that reading its manifest rows in one
# query pays.
CHUNK = 50


def _serve(ctx: Context, subject: str, action: str, data: dict):
    from ckan import logic

    try:
        # use_cache off: package_show would serve Solr's copy, not the database
        return logic.get_action(action)(
            {"ignore_auth": True, "use_cache": False}, data)
    except Interrupted:
        # SIGTERM (as Ctrl-C, no Exception) stops the run; it is not a
        # dataset CKAN cannot serve.
        raise
    except Exception as error:          # whatever stops CKAN serving it
        first = (str(error).strip().splitlines() or [""])[0]
        ctx.differ(subject, action, "served",
                   f"{type(error).__name__}: {first}"[:300])
        return None


def _md5(text) -> str:
    return hashlib.md5((text or "").encode("utf-8")).hexdigest()


def _extras(shown: dict) -> dict:
    return {e["key"]: e["value"] for e in shown.get("extras", [])}


def _choose(ids: list[str], size: int, seed: int, everything: bool):
    if everything or size >= len(ids):
        return list(ids)
    return random.Random(seed).sample(ids, size)


# The sample, chosen in the caller's transaction ------------------------------

def _dataset_ids(ctx: Context, size: int, seed: int,
                 everything: bool) -> list[str]:
    rows = ctx.rows("SELECT id, trap FROM datagovuk.manifest_dataset "
                    "WHERE state = 'active' ORDER BY id")
    chosen = set(_choose([row[0] for row in rows], size, seed, everything))
    return [dataset_id for dataset_id, trap in rows
            if dataset_id in chosen or trap]


def _publisher_ids(ctx: Context, datasets: list[str], size: int, seed: int,
                   everything: bool) -> list[str]:
    owners = [owner for (owner,) in ctx.rows(
        "SELECT DISTINCT owner_org FROM datagovuk.manifest_dataset "
        "WHERE id = ANY(%(ids)s) AND owner_org IS NOT NULL ORDER BY 1",
        {"ids": datasets})]
    return sorted(_choose(owners, size, seed, everything))


def _user_ids(ctx: Context, size: int, seed: int,
              everything: bool) -> list[str]:
    kept = [row[0] for row in ctx.rows(
        "SELECT id, name, sysadmin, publisher, demoted_before "
        "FROM datagovuk.manifest_user ORDER BY id")
        if rules.user_kept(dict(zip(("id", "name", "sysadmin", "publisher",
                                     "demoted_before"), row)),
                           ctx.manifest.site_user, ctx.migrated)]
    chosen = set(_choose(kept, size, seed, everything))
    return [uid for uid in kept if uid in chosen]


def _tasks(kind: str, ids: list[str]) -> list[tuple[str, list[str]]]:
    return [(kind, ids[start:start + CHUNK])
            for start in range(0, len(ids), CHUNK)]


# One chunk asked for: its manifest rows in one query, then CKAN's API --------

def _expected_resources(ctx: Context, ids: list[str]) -> dict[str, list]:
    found: dict[str, list] = {}
    for package_id, *resource in ctx.rows(
            "SELECT package_id, id, url, format, name, description_md5, "
            "viewer FROM datagovuk.manifest_resource "
            "WHERE package_id = ANY(%(ids)s) ORDER BY package_id, position, id",
            {"ids": ids}):
        found.setdefault(package_id, []).append(resource)
    return found


def _check_datasets(ctx: Context, ids: list[str]) -> None:
    rows = ctx.rows(
        "SELECT id, name, state, title, notes_md5, owner_org, license_id, "
        "extras FROM datagovuk.manifest_dataset WHERE id = ANY(%(ids)s) "
        "ORDER BY id", {"ids": ids})
    resources = _expected_resources(ctx, ids)
    with batched_show.batched(ids):
        for row in rows:
            _check_dataset(ctx, row, resources.get(row[0], []))


def _check_dataset(ctx: Context, row, resources: list) -> None:
    dataset_id, name, state, title, notes, owner, licence, extras = row
    base = ctx.manifest.organogram_base_url
    subject = f"dataset {name}"
    shown = _serve(ctx, subject, "package_show", {"id": dataset_id})
    if shown is not None:
        ctx.compare(subject, {
            "name": (name, shown.get("name")),
            "state": (state, shown["state"]),
            "title": (title, shown.get("title")),
            "notes (md5)": (notes, _md5(shown.get("notes"))),
            "owner_org": (owner, shown.get("owner_org")),
            "license_id": (licence, shown.get("license_id")),
            "extras": (rules.dataset_extras(extras, ctx.migrated),
                       _extras(shown)),
            "resources": (
                [(rid, rules.resource_url(url, fmt, extras, base,
                                          ctx.migrated),
                  fmt, rname, description)
                 for rid, url, fmt, rname, description, viewer
                 in resources if rules.resource_kept(viewer, ctx.migrated)],
                [(r["id"], r.get("url"), r.get("format") or None,
                  r.get("name"), _md5(r.get("description")))
                 for r in shown.get("resources", [])])})


def _check_publishers(ctx: Context, ids: list[str]) -> None:
    rows = {row[0]: row[1:] for row in ctx.rows(
        "SELECT id, name, title, state, extras FROM datagovuk.manifest_group "
        "WHERE id = ANY(%(ids)s)", {"ids": ids})}
    for group_id in ids:
        if group_id not in rows:
            ctx.differ(f"publisher {group_id}", "in the manifest", "present",
                       ABSENT)
            continue
        name, title, state, extras = rows[group_id]
        subject = f"publisher {name}"
        shown = _serve(ctx, subject, "organization_show", {
            "id": group_id, "include_datasets": False,
            "include_dataset_count": False, "include_users": False,
            "include_followers": False, "include_groups": False})
        if shown is not None:
            ctx.compare(subject, {
                "name": (name, shown.get("name")),
                "title": (title, shown["title"]),
                "state": (state, shown.get("state")),
                "extras": (rules.stored_extras(extras), _extras(shown))})


def _check_users(ctx: Context, ids: list[str]) -> None:
    for uid, name, state, sysadmin, spared in ctx.rows(
            "SELECT id, name, state, sysadmin, spared FROM "
            "datagovuk.manifest_user WHERE id = ANY(%(ids)s) ORDER BY id",
            {"ids": ids}):
        user = {"name": name, "sysadmin": sysadmin, "spared": spared}
        shown = _serve(ctx, f"user {name}", "user_show", {"id": uid})
        if shown is not None:
            ctx.compare(f"user {name}", {
                "state": (state, shown.get("state")),
                "sysadmin": (rules.user_sysadmin(
                    user, ctx.migrated, uid in ctx.promoted),
                    shown.get("sysadmin"))})


CHECKS = {"dataset": _check_datasets, "publisher": _check_publishers,
          "user": _check_users}


def check_chunk(ctx: Context, task: tuple[str, list[str]]) -> CheckResult:
    """One task's records asked for; its own result (merged by
    :func:`check`)."""
    kind, ids = task
    ctx.result = CheckResult(NAME, WHAT, compared=len(ids))
    CHECKS[kind](ctx, ids)
    return ctx.result


# In a worker ------------------------------------------------------------------

_worker: Optional[Context] = None


def _start_worker(parent: Context) -> None:
    """The worker's own context: the parent's manifest and facts, a
    read-only connection of its own (the parent's stays the parent's)."""
    global _worker
    parent.connection.engine.dispose(close=False)
    _engine, connection = db.engine_connection(parent.connection.engine.url)
    connection.exec_driver_sql(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    _worker = Context(connection, parent.manifest, parent.migrated,
                      parent.promoted)


def _check_chunk_in_worker(task: tuple[str, list[str]]) -> CheckResult:
    return check_chunk(_worker, task)


# The whole sample ---------------------------------------------------------------

def _merge(into: CheckResult, part: CheckResult) -> None:
    into.compared += part.compared
    into.differences += part.differences
    if part.result == "failed":
        into.result = "failed"
    into.first += part.first[:DIFFERENCES_KEPT - len(into.first)]


def _plan(ctx: Context, size: int, seed: int,
          everything: bool) -> list[tuple[str, list[str]]]:
    datasets = _dataset_ids(ctx, size, seed, everything)
    # A tenth as many publishers (of the sampled datasets) and users: each
    # call costs about as much as a package_show.
    return (_tasks("dataset", datasets)
            + _tasks("publisher", _publisher_ids(
                ctx, datasets, size // PER_DATASETS, seed, everything))
            + _tasks("user", _user_ids(ctx, size // PER_DATASETS, seed,
                                       everything)))


@contextlib.contextmanager
def asking(ctx: Context, size: int, seed: int, everything: bool = False,
           jobs: int = 1) -> Iterator[Callable[..., CheckResult]]:
    """The sample chosen (in the caller's transaction) and, with ``jobs``
    over 1, handed to the workers, which ask CKAN while the caller goes on
    (the database checks); the block's ``answers(progress)`` waits for
    their answers (with one job: asks then) and merges them."""
    tasks = _plan(ctx, size, seed, everything)
    total = sum(len(ids) for _kind, ids in tasks)

    def answers(progress: Callable[[str], None] = lambda message: None
                ) -> CheckResult:
        result = CheckResult(NAME, WHAT)
        for part in parts:
            _merge(result, part)
            output.live(progress, f"{NAME}: {result.compared} of {total} "
                        "asked")
        ctx.result = result
        return result

    with forked.results(_check_chunk_in_worker, tasks, jobs, ordered=True,
                        then=lambda: _start_worker(ctx),
                        here=lambda task: check_chunk(ctx, task)) as parts:
        yield answers


def check(ctx: Context, size: int, seed: int, everything: bool = False,
          jobs: int = 1,
          progress: Callable[[str], None] = lambda message: None
          ) -> CheckResult:
    with asking(ctx, size, seed, everything, jobs) as answers:
        return answers(progress)
