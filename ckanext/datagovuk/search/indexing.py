"""CKAN's own search documents, made fast: the engine room of ``reindex``.

Each dataset's document is made by CKAN's code: ``package_show`` (its
``package_dictize`` and show schema, every plugin's ``after_dataset_show``)
and ``index_update_package_dicts`` (``PackageSearchIndex.index_package``,
every plugin's ``before_dataset_index``).  What changes is how the data
reaches that code and how the documents leave it:

* reads in batches, a chunk of datasets at a time
  (:mod:`ckanext.datagovuk.batched_show`, shared with ``verify``);
* the dataset dict is validated once when no plugin changes the show
  schema (CKAN validates it twice, with two equal schemas);
* documents are collected and sent to the new core in batches
  (``BatchingConnection``), never committed (the caller commits once);
* chunks are spread over forked worker processes, each with its own
  database connections.
"""
from __future__ import annotations

from typing import Callable

from ckanext.datagovuk.batched_show import batched, replaced

TIMEOUT = 600


class BatchingConnection:
    """Stands in for the ``pysolr.Solr`` that CKAN's indexer makes for each
    document: collects the documents and posts them to its core in
    batches, never committing (one commit follows the whole run)."""

    def __init__(self, solr, batch_size: int):
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


def _validated_once(context: dict, dataset_id: str):
    """``package_show_default_and_custom_schemas`` when the dataset's type
    has CKAN's own show schema: the one validation serves as both."""
    from ckan import logic
    from ckan.lib.plugins import (DefaultDatasetForm, lookup_package_plugin,
                                  plugin_validate)
    from ckan.logic.schema import default_show_package_schema

    context = logic.fresh_context(context, ignore_auth=True, use_cache=False,
                                  validate=False)
    shown = logic.get_action("package_show")(context, {"id": dataset_id})
    if type(lookup_package_plugin(shown["type"])) is not DefaultDatasetForm:
        return logic.package_show_default_and_custom_schemas(
            context, dataset_id)
    validated, _errors = plugin_validate(
        object(), context, shown, default_show_package_schema(),
        "package_show")
    logic.apply_after_dataset_show_plugins(context, validated)
    return validated, validated


def _index_one(dataset_id: str, failures: list[tuple[str, str]]) -> None:
    """CKAN's document for one dataset, or, when CKAN's own code cannot
    make it, a failure noted as ``ckan search-index rebuild -i`` would log
    it (errors of the database or of Solr stop the run instead)."""
    from ckan import logic
    from ckan.lib.search import SearchIndexError
    from sqlalchemy.exc import SQLAlchemyError

    from ckanext.datagovuk.errors import Interrupted

    try:
        both = _validated_once({"ignore_auth": True}, dataset_id)
        logic.index_update_package_dicts(both, True)
    except (SQLAlchemyError, SearchIndexError, Interrupted):
        # SIGTERM (Interrupted) stops the run: it is no dataset's failure.
        raise
    except Exception as error:        # CKAN's rebuild -i goes on too
        failures.append((dataset_id, f"{type(error).__name__}: {error}"))


def index_chunk(core_url: str, ids: list[str]) -> tuple[int, list]:
    """Index ``ids`` with CKAN's indexer into ``core_url`` in one batch,
    without commit.  Returns how many were indexed, and the failures."""
    import pysolr
    from ckan.lib.search import index

    connection = BatchingConnection(pysolr.Solr(core_url, timeout=TIMEOUT),
                                    batch_size=len(ids))
    failures: list[tuple[str, str]] = []
    with replaced(index, "make_connection", lambda *a, **k: connection), \
            batched(ids):
        for dataset_id in ids:
            _index_one(dataset_id, failures)
        connection.flush()
    return len(ids) - len(failures), failures


def _index_chunk_in_worker(task: tuple[str, list[str]]) -> tuple[int, list]:
    return index_chunk(*task)


def index_datasets(core_url: str, ids: list[str], workers: int,
                   batch_size: int, progress: Callable[[int], None]) -> list:
    """Index ``ids`` into ``core_url`` in chunks of a batch, spread over
    ``workers`` forked processes, then commit once.  Returns the datasets
    CKAN's code could not index, with why."""
    import pysolr

    from ckanext.datagovuk import forked

    tasks = [(core_url, ids[start:start + batch_size])
             for start in range(0, len(ids), batch_size)]
    done, failures = 0, []
    with forked.results(_index_chunk_in_worker, tasks, workers) as results:
        for indexed, failed in results:
            done += indexed + len(failed)
            failures += failed
            progress(done)
    pysolr.Solr(core_url, timeout=TIMEOUT).commit(waitSearcher=True)
    return failures
