"""CKAN's own API asked, in this process, for a sample of what the
manifest holds: ``package_show`` for datasets chosen at random (with a
seed, so the same sample can be asked for again) and every dataset a trap
fix touched, ``organization_show`` for a tenth as many of their
publishers, ``user_show`` for a tenth as many users (``--all``: every
one).  Each must be served (CKAN 2.12 validates what it
shows) with the values the rules expect.  Needs CKAN's model bound to the
verified database and a request context; no Solr (no dataset counts)."""
from __future__ import annotations

import hashlib
import random

from ckanext.datagovuk.errors import Interrupted
from ckanext.datagovuk.verify import rules
from ckanext.datagovuk.verify.checks import ABSENT, CheckResult, Context

NAME = "API sample"
# Publishers and users asked for: one per this many sampled datasets.
PER_DATASETS = 10


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


def _choose(ids: list[str], size: int, seed: int, everything: bool):
    if everything or size >= len(ids):
        return list(ids)
    return random.Random(seed).sample(ids, size)


def _datasets(ctx: Context, size: int, seed: int, everything: bool):
    rows = ctx.rows(
        "SELECT id, name, type, state, title, notes_md5, owner_org, "
        "license_id, extras, trap FROM datagovuk.manifest_dataset "
        "WHERE state = 'active' ORDER BY id")
    chosen = set(_choose([row[0] for row in rows], size, seed, everything))
    return [row for row in rows if row[0] in chosen or row[9]]


def _expected_resources(ctx: Context, dataset_id: str, extras) -> list:
    base = ctx.manifest.organogram_base_url
    return [(rid, rules.resource_url(url, fmt, extras, base, ctx.migrated),
             fmt, name, description)
            for rid, url, fmt, name, description, viewer in ctx.rows(
                "SELECT id, url, format, name, description_md5, viewer "
                "FROM datagovuk.manifest_resource WHERE package_id = %(id)s "
                "ORDER BY position, id", {"id": dataset_id})
            if rules.resource_kept(viewer, ctx.migrated)]


def _check_dataset(ctx: Context, row) -> None:
    (dataset_id, name, kind, state, title, notes, owner, licence, extras,
     _) = row
    subject = f"dataset {name}"
    shown = _serve(ctx, subject, "package_show", {"id": dataset_id})
    if shown is None:
        return
    ctx.compare(subject, {
        "name": (name, shown.get("name")), "state": (state, shown["state"]),
        "title": (title, shown.get("title")),
        "notes (md5)": (notes, _md5(shown.get("notes"))),
        "owner_org": (owner, shown.get("owner_org")),
        "license_id": (licence, shown.get("license_id")),
        "extras": (rules.dataset_extras(extras, ctx.migrated),
                   {e["key"]: e["value"] for e in shown.get("extras", [])}),
        "resources": (
            _expected_resources(ctx, dataset_id, extras),
            [(r["id"], r.get("url"), r.get("format") or None,
              r.get("name"), _md5(r.get("description")))
             for r in shown.get("resources", [])])})


def _check_publisher(ctx: Context, group_id: str) -> None:
    found = ctx.rows("SELECT name, title, state, extras FROM "
                     "datagovuk.manifest_group WHERE id = %(id)s",
                     {"id": group_id})
    if not found:
        ctx.differ(f"publisher {group_id}", "in the manifest", "present",
                   ABSENT)
        return
    name, title, state, extras = found[0]
    subject = f"publisher {name}"
    shown = _serve(ctx, subject, "organization_show", {
        "id": group_id, "include_datasets": False,
        "include_dataset_count": False, "include_users": False,
        "include_followers": False, "include_groups": False})
    if shown is None:
        return
    ctx.compare(subject, {
        "name": (name, shown.get("name")), "title": (title, shown["title"]),
        "state": (state, shown.get("state")),
        "extras": (rules.stored_extras(extras),
                   {e["key"]: e["value"] for e in shown.get("extras", [])})})


def _check_users(ctx: Context, size: int, seed: int,
                 everything: bool) -> int:
    rows = [row for row in ctx.rows(
        "SELECT id, name, state, sysadmin, publisher, spared, "
        "demoted_before FROM datagovuk.manifest_user ORDER BY id")
        if rules.user_kept(dict(zip(("id", "name", "state", "sysadmin",
                                     "publisher", "spared",
                                     "demoted_before"), row)),
                           ctx.manifest.site_user, ctx.migrated)]
    chosen = set(_choose([row[0] for row in rows], size, seed, everything))
    for uid, name, state, sysadmin, publisher, spared, before in rows:
        if uid not in chosen:
            continue
        user = {"name": name, "sysadmin": sysadmin, "spared": spared}
        shown = _serve(ctx, f"user {name}", "user_show", {"id": uid})
        if shown is not None:
            ctx.compare(f"user {name}", {
                "state": (state, shown.get("state")),
                "sysadmin": (rules.user_sysadmin(
                    user, ctx.migrated, uid in ctx.promoted),
                    shown.get("sysadmin"))})
    return len(chosen)


def check(ctx: Context, size: int, seed: int,
          everything: bool = False) -> CheckResult:
    ctx.result = CheckResult(NAME, "datasets, publishers and users served "
                             "by package_show, organization_show, user_show")
    datasets = _datasets(ctx, size, seed, everything)
    for row in datasets:
        _check_dataset(ctx, row)
    # A tenth as many publishers (of the sampled datasets) and users: each
    # call costs about as much as a package_show.
    owners = sorted(_choose(sorted({row[6] for row in datasets if row[6]}),
                            size // PER_DATASETS, seed, everything))
    for group_id in owners:
        _check_publisher(ctx, group_id)
    users = _check_users(ctx, size // PER_DATASETS, seed, everything)
    ctx.result.compared = len(datasets) + len(owners) + users
    return ctx.result
