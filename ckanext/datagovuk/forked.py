"""Work spread over forked worker processes of a process that has loaded
CKAN: what ``reindex`` (its indexing) and ``verify`` (its API sample)
share.

A worker is forked, so it has CKAN's app, config and plugins already; the
parent's database connections, Ctrl-C and SIGTERM stay the parent's
(:func:`start_worker`).  Leaving :func:`results` early, on an error, Ctrl-C
or the :class:`~ckanext.datagovuk.errors.Interrupted` of SIGTERM, ends
every worker before the exception goes on.

Bottom layer: imports nothing of this package.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
from typing import Callable, Iterable, Iterator, Optional


# Held from before the fork until the worker's own handlers are set: a
# signal meant for the parent's handler would otherwise raise in a worker
# that has not yet set its own (a traceback instead of a quiet end).
STOPPING_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)


def start_worker(then: Optional[Callable[[], None]] = None) -> None:
    """In a forked worker: the database connections belong to the parent
    (SQLAlchemy's advice for a fork: a new pool, the parent's connections
    left alone), and so do Ctrl-C and SIGTERM (it ends the workers when it
    stops); then ``then()``, the caller's own set-up."""
    from ckan import model

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)
    model.Session.remove()
    model.meta.engine.dispose(close=False)
    if then is not None:
        then()


@contextlib.contextmanager
def results(function: Callable, tasks: list, workers: int,
            ordered: bool = False,
            then: Optional[Callable[[], None]] = None,
            here: Optional[Callable] = None) -> Iterator[Iterable]:
    """``function`` over ``tasks`` in ``workers`` forked processes (each
    set up by :func:`start_worker` and ``then``), or ``here`` (by default
    ``function``) in this process when one would do; the results as they
    come, or in the tasks' order when ``ordered``."""
    if workers <= 1 or len(tasks) <= 1:
        yield map(here or function, tasks)
        return
    pool = None
    try:
        with _signals_held():
            pool = multiprocessing.get_context("fork").Pool(
                min(workers, len(tasks)), initializer=start_worker,
                initargs=(then,))
        yield (pool.imap if ordered else pool.imap_unordered)(function, tasks)
        pool.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
