"""Rebuild the site's search index into a new Solr core, verify it, then
swap it with the live core, which keeps serving until the swap.

The documents are CKAN's own: each dataset goes through CKAN's indexer
(``ckan.logic.index_update_package``, which runs every plugin's
``before_dataset_index``).  Only their transport changes: CKAN's indexer
sends one document per request to the configured core, so while we index,
its connection is replaced by one that collects documents and sends them in
batches to the new core, with one commit at the end.

Any failure or interrupt before the swap unloads the new core and leaves the
live core as it was.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import requests

from ckanext.datagovuk.errors import Interrupted, OperatorError, sigterm_raises

BATCH_SIZE = 250
SAMPLE_SIZE = 20
# What package_search shows of a dataset, compared with package_show.
SAMPLE_FIELDS = ("name", "title", "state", "private", "owner_org",
                 "metadata_modified", "num_resources")
CONFIGSET = "ckan"
TIMEOUT = 600


@dataclass
class SolrCores:
    """The CoreAdmin API of the Solr node that serves ``solr_url``."""
    base_url: str
    live: str
    auth: tuple[str, str] | None = None

    @classmethod
    def from_solr_url(cls, solr_url: str, user: str | None = None,
                      password: str | None = None) -> "SolrCores":
        base_url, _, live = solr_url.rstrip("/").rpartition("/")
        return cls(base_url, live, (user, password) if user and password else None)

    def core_url(self, core: str) -> str:
        return f"{self.base_url}/{core}"

    def _get(self, url: str, **params) -> dict:
        try:
            reply = requests.get(url, params={**params, "wt": "json"},
                                 auth=self.auth, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise OperatorError(f"Solr at {self.base_url} is unreachable: "
                                f"{type(error).__name__}") from None
        body = reply.json() if reply.headers.get(
            "content-type", "").startswith("application/json") else {}
        if reply.status_code != 200:
            message = body.get("error", {}).get("msg") or reply.reason
            raise OperatorError(f"Solr refused {params.get('action', url)}: "
                                f"{message.splitlines()[0]}")
        return body

    def admin(self, action: str, **params) -> dict:
        return self._get(f"{self.base_url}/admin/cores", action=action, **params)

    def schema_name(self, core: str) -> str:
        return self._get(f"{self.core_url(core)}/schema/name")["name"]

    def count(self, core: str, query: str = "*:*") -> int:
        return self._get(f"{self.core_url(core)}/select", q=query,
                         rows=0)["response"]["numFound"]

    def documents(self, core: str, ids: list[str], fields: str) -> list[dict]:
        query = " OR ".join(f'"{dataset_id}"' for dataset_id in ids)
        return self._get(f"{self.core_url(core)}/select", q=f"id:({query})",
                         fl=fields, rows=len(ids))["response"]["docs"]

    def create(self, core: str, configset: str) -> None:
        self.admin("CREATE", name=core, configSet=configset)

    def swap(self, core: str, other: str) -> None:
        self.admin("SWAP", core=core, other=other)

    def unload(self, core: str) -> None:
        self.admin("UNLOAD", core=core, deleteIndex="true",
                   deleteDataDir="true", deleteInstanceDir="true")


class BatchingConnection:
    """Stands in for the ``pysolr.Solr`` that CKAN's indexer makes for each
    document: collects the documents and posts them to its core in
    batches, never committing (one commit follows the whole run)."""

    def __init__(self, solr, batch_size: int = BATCH_SIZE):
        self.solr = solr
        self.url = solr.url
        self.batch_size = batch_size
        self.pending: list[dict] = []

    def add(self, docs, commit=False, **_options) -> None:
        self.pending.extend(docs)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.solr.add(self.pending, commit=False)
            self.pending = []

    def delete(self, **_options) -> None:
        raise RuntimeError("a reindex into a new core deletes nothing")


@contextlib.contextmanager
def routed_to(connection: BatchingConnection) -> Iterator[None]:
    """CKAN's indexer looks its connection up by name in its own module at
    each call and takes none as an argument; point that name at ours."""
    from ckan.lib.search import index

    made = index.make_connection
    index.make_connection = lambda *args, **kwargs: connection
    try:
        yield
    finally:
        index.make_connection = made


def indexed_dataset_ids() -> list[str]:
    """The datasets CKAN's own rebuild indexes: every package, less the
    deleted ones when ``ckan.search.remove_deleted_packages`` is on."""
    from ckan import model
    from ckan.common import config

    packages = model.Session.query(model.Package.id)
    if config.get("ckan.search.remove_deleted_packages"):
        packages = packages.filter(model.Package.state != "deleted")
    return [row[0] for row in packages.order_by(model.Package.id)]


def check_schema(cores: SolrCores, core: str) -> None:
    from ckan.lib.search import SUPPORTED_SCHEMA_VERSIONS

    name = cores.schema_name(core)
    version = name.removeprefix("ckan-")
    if not name.startswith("ckan-") or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise OperatorError(f"Solr core {core} has schema {name!r}, which this "
                            "CKAN does not accept (it accepts ckan-"
                            + ", ckan-".join(SUPPORTED_SCHEMA_VERSIONS) + ")")


class Progress:
    """One line on stdout (stderr is kept for the one-line error),
    rewritten: done/total, rate and time left."""

    def __init__(self, total: int, stream=sys.stdout):
        self.total, self.stream = total, stream
        self.started = self.shown = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.shown < 1:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        left = (self.total - done) / rate if rate else 0
        self.stream.write(f"\rindexed {done}/{self.total} datasets, "
                          f"{rate:.0f}/s, {left:.0f} s left ")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _start_worker() -> None:
    """In a forked worker: the database connections belong to the parent,
    and so do Ctrl-C and SIGTERM (it ends the workers when it stops)."""
    from ckan import model

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    model.Session.remove()
    model.meta.engine.dispose(close=False)


def _index_chunk(core_url: str, ids: list[str]) -> int:
    """Index ``ids`` with CKAN's indexer into ``core_url`` in one batch,
    without commit."""
    import pysolr
    from ckan import logic, model

    connection = BatchingConnection(pysolr.Solr(core_url, timeout=TIMEOUT),
                                    batch_size=len(ids))
    with routed_to(connection):
        for dataset_id in ids:
            logic.index_update_package({"ignore_auth": True}, dataset_id, True)
        connection.flush()
    # Keeps the session's identity map from holding every dataset.
    model.Session.remove()
    return len(ids)


def _index_chunk_in_worker(task: tuple[str, list[str]]) -> int:
    return _index_chunk(*task)


def index_datasets(core_url: str, ids: list[str], workers: int,
                   batch_size: int, progress: Callable[[int], None]) -> None:
    """Index ``ids`` into ``core_url`` in chunks of a batch, spread over
    ``workers`` forked processes (each with its own database connection),
    then commit once."""
    import multiprocessing

    import pysolr

    tasks = [(core_url, ids[start:start + batch_size])
             for start in range(0, len(ids), batch_size)]
    done = 0
    if workers <= 1:
        for task in tasks:
            done += _index_chunk_in_worker(task)
            progress(done)
    else:
        pool = multiprocessing.get_context("fork").Pool(
            workers, initializer=_start_worker)
        try:
            for indexed in pool.imap_unordered(_index_chunk_in_worker, tasks):
                done += indexed
                progress(done)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
    pysolr.Solr(core_url, timeout=TIMEOUT).commit(waitSearcher=True)


def verify(cores: SolrCores, core: str, ids: list[str]) -> None:
    """The new core holds one document per dataset of this site, and a
    sample of them matches what ``package_show`` says now."""
    from ckan import logic
    from ckan.common import config

    site_query = f'site_id:"{config["ckan.site_id"]}"'
    found = cores.count(core, site_query)
    if found != len(ids):
        raise OperatorError(f"the new index holds {found} datasets, "
                            f"the database {len(ids)}")
    sample = ids[:: max(1, len(ids) // SAMPLE_SIZE)][:SAMPLE_SIZE]
    indexed = {doc["id"]: json.loads(doc["data_dict"]) for doc in
               cores.documents(core, sample, "id,data_dict")}
    show = logic.get_action("package_show")
    for dataset_id in sample:
        shown = show({"ignore_auth": True}, {"id": dataset_id})
        found = indexed.get(dataset_id, {})
        if any(found.get(key) != shown.get(key) for key in SAMPLE_FIELDS):
            raise OperatorError(f"the new index differs from package_show "
                                f"for dataset {dataset_id}")


def _as_operator_error(error: BaseException) -> BaseException:
    """What an operator reads when the build of the new core stopped."""
    if isinstance(error, OperatorError):
        return error
    unchanged = "the new core was dropped and the live core is unchanged"
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        return OperatorError(f"reindex interrupted: {unchanged}")
    if not isinstance(error, Exception):
        return error
    first_line = (str(error).strip().splitlines() or [""])[0]
    return OperatorError(f"indexing failed ({type(error).__name__}: "
                         f"{first_line}): {unchanged}")


def new_core_name(live: str) -> str:
    return f"{live}-reindex-{time.strftime('%Y%m%d%H%M%S')}"


def reindex(solr_url: str, configset: str = CONFIGSET, drop_old: bool = False,
            workers: int = 1, batch_size: int = BATCH_SIZE,
            progress_stream=sys.stdout, user: str | None = None,
            password: str | None = None) -> dict:
    """Build the index of the configured database into a new core, verify
    it and swap it with the live core.  Returns what was done."""
    cores = SolrCores.from_solr_url(solr_url, user, password)
    check_schema(cores, cores.live)
    ids = indexed_dataset_ids()
    new = new_core_name(cores.live)
    with sigterm_raises():
        cores.create(new, configset)
        try:
            check_schema(cores, new)
            index_datasets(cores.core_url(new), ids, workers, batch_size,
                           Progress(len(ids), progress_stream))
            verify(cores, new, ids)
        except BaseException as error:
            with contextlib.suppress(OperatorError):
                cores.unload(new)
            raise _as_operator_error(error) from error
    try:
        cores.swap(cores.live, new)
    except OperatorError:
        with contextlib.suppress(OperatorError):
            cores.unload(new)
        raise
    if drop_old:
        cores.unload(new)
    return {"core": cores.live, "datasets": len(ids),
            "previous": None if drop_old else new}


def format_result(result: dict) -> str:
    lines = [f"search index rebuilt: {result['datasets']} datasets now "
             f"served by core {result['core']}"]
    if result["previous"]:
        lines.append(f"previous index kept as core {result['previous']} "
                     "(drop it with CoreAdmin UNLOAD, or next time use --drop-old)")
    return "\n".join(lines)
