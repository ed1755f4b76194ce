"""Rebuild the site's search index into a new Solr core, verify it, then
swap it with the live core, which keeps serving until the swap.

The documents are CKAN's own, made and sent fast by ``indexing``; the
CoreAdmin calls are ``solr``'s.  With ``into`` the new core gets that name;
with ``swap=False`` it is left built and verified next to the live core (as
``migrate --from`` does, which swaps it in together with the database).

Solr unreachable, or a live core whose schema this CKAN does not accept, is
refused before anything is made.  Any failure or interrupt before the swap
unloads the new core and leaves the live core as it was.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from ckanext.datagovuk.search import indexing
from ckanext.datagovuk.errors import Interrupted, OperatorError, sigterm_raises
from ckanext.datagovuk.search.solr import CONFIGSET, SolrCores, check_schema, site_query

BATCH_SIZE = 250
SAMPLE_SIZE = 20
# What package_search shows of a dataset, compared with package_show.
SAMPLE_FIELDS = ("name", "title", "state", "private", "owner_org",
                 "metadata_modified", "num_resources")
# Without a terminal, one progress line this often.
PROGRESS_INTERVAL = 10.0
FAILURES_SHOWN = 10


@dataclass
class ReindexOptions:
    configset: str = CONFIGSET
    into: str | None = None
    swap: bool = True
    drop_old: bool = False
    workers: int = 1
    batch_size: int = BATCH_SIZE


def indexed_dataset_ids() -> list[str]:
    """The datasets CKAN's own rebuild indexes: every package, less the
    deleted ones when ``ckan.search.remove_deleted_packages`` is on."""
    from ckan import model
    from ckan.common import config

    packages = model.Session.query(model.Package.id)
    if config.get("ckan.search.remove_deleted_packages"):
        packages = packages.filter(model.Package.state != "deleted")
    return [row[0] for row in packages.order_by(model.Package.id)]


class Progress:
    """Done/total, rate and time left: one line rewritten on a terminal
    (stderr), else a line on stdout every ``PROGRESS_INTERVAL`` seconds
    (stderr is then kept for the one-line error)."""

    def __init__(self, total: int, terminal: TextIO = sys.stderr,
                 log: TextIO = sys.stdout):
        self.total = total
        self.tty = terminal.isatty()
        self.stream = terminal if self.tty else log
        self.interval = 1.0 if self.tty else PROGRESS_INTERVAL
        self.started = self.shown = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.shown < self.interval:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        left = (self.total - done) / rate if rate else 0
        line = (f"indexed {done}/{self.total} datasets, {rate:.0f}/s, "
                f"{left:.0f} s left")
        if self.tty:
            self.stream.write(f"\r{line} " + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def verify(cores: SolrCores, core: str, ids: list[str]) -> None:
    """The new core holds one document per indexed dataset of this site,
    and a sample of them matches what ``package_show`` says now."""
    from ckan import logic
    from ckan.common import config

    found = cores.count(core, site_query(config["ckan.site_id"]))
    if found != len(ids):
        raise OperatorError(f"the new index holds {found} datasets, "
                            f"the database {len(ids)}")
    sample = ids[:: max(1, len(ids) // SAMPLE_SIZE)][:SAMPLE_SIZE]
    indexed = {doc["id"]: json.loads(doc["data_dict"]) for doc in
               cores.documents(core, sample, "id,data_dict")} if sample else {}
    show = logic.get_action("package_show")
    for dataset_id in sample:
        shown = show({"ignore_auth": True}, {"id": dataset_id})
        found = indexed.get(dataset_id, {})
        if any(found.get(key) != shown.get(key) for key in SAMPLE_FIELDS):
            raise OperatorError(f"the new index differs from package_show "
                                f"for dataset {dataset_id}")


def _as_operator_error(error: BaseException, core: str) -> BaseException:
    """What an operator reads when the build of the new core stopped."""
    if isinstance(error, OperatorError):
        return error
    unchanged = f"the new core {core} was dropped and the live core is unchanged"
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        return OperatorError(f"reindex interrupted: {unchanged}")
    if not isinstance(error, Exception):
        return error
    first_line = (str(error).strip().splitlines() or [""])[0]
    return OperatorError(f"indexing failed ({type(error).__name__}: "
                         f"{first_line}): {unchanged}")


def new_core_name(live: str) -> str:
    return f"{live}-reindex-{time.strftime('%Y%m%d%H%M%S')}"


def check_solr(cores: SolrCores) -> None:
    """Solr answers and its live core has a schema this CKAN accepts."""
    check_schema(cores, cores.live)


def build(cores: SolrCores, options: ReindexOptions, progress_stream=None
          ) -> dict:
    """Build and verify the index of the configured database in a new core
    (dropped again on any failure).  Returns its name, datasets indexed
    and the datasets CKAN's indexer could not index."""
    check_solr(cores)
    new = options.into or new_core_name(cores.live)
    if cores.exists(new):
        raise OperatorError(f"Solr core {new} exists already: name a new "
                            "one with --into")
    ids = indexed_dataset_ids()
    progress = (Progress(len(ids)) if progress_stream is None else
                Progress(len(ids), progress_stream, progress_stream))
    with sigterm_raises():
        try:
            # Inside: an interrupt during CREATE may leave the core made.
            cores.create(new, options.configset)
            check_schema(cores, new)
            failures = indexing.index_datasets(
                cores.core_url(new), ids, options.workers, options.batch_size,
                progress)
            failed = {dataset_id for dataset_id, _ in failures}
            verify(cores, new, [i for i in ids if i not in failed])
        except BaseException as error:
            with contextlib.suppress(OperatorError):
                cores.unload(new)
            raise _as_operator_error(error, new) from error
    return {"core": new, "datasets": len(ids) - len(failures),
            "failures": failures}


def reindex(cores: SolrCores, options: ReindexOptions,
            progress_stream=None) -> dict:
    """``build``, then (unless ``options.swap`` is off) swap the new core
    with the live one.  Returns what was done."""
    built = build(cores, options, progress_stream)
    new = built["core"]
    result = {**built, "live": cores.live, "swapped": options.swap,
              "previous": None}
    if not options.swap:
        return result
    try:
        cores.swap(cores.live, new)
    except OperatorError:
        with contextlib.suppress(OperatorError):
            cores.unload(new)
        raise
    if options.drop_old:
        cores.unload(new)
    else:
        result["previous"] = new
    return result


def format_failures(failures: list[tuple[str, str]]) -> list[str]:
    if not failures:
        return []
    lines = [f"{len(failures)} datasets left out: CKAN's own indexer fails "
             "on them (`ckan search-index rebuild -i` skips them too):"]
    lines += [f"  {dataset_id}: {reason}"
              for dataset_id, reason in failures[:FAILURES_SHOWN]]
    if len(failures) > FAILURES_SHOWN:
        lines.append(f"  ... and {len(failures) - FAILURES_SHOWN} more")
    return lines


def format_result(result: dict) -> str:
    if not result["swapped"]:
        lines = [f"search index built: {result['datasets']} datasets in core "
                 f"{result['core']} (not swapped: core {result['live']} "
                 "serves as before)"]
    else:
        lines = [f"search index rebuilt: {result['datasets']} datasets now "
                 f"served by core {result['live']}"]
    if result["previous"]:
        lines.append(f"previous index kept as core {result['previous']} "
                     "(drop it with CoreAdmin UNLOAD, or next time use --drop-old)")
    return "\n".join(lines + format_failures(result["failures"]))
