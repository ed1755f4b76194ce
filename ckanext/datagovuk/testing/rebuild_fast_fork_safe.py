"""CKAN's ``ckan search-index rebuild-fast``, with the one change that makes
it fork-safe: each forked process drops the parent's pooled database
connections first.  CKAN's own shares them, and one process may fail on
the shared connection while another waits on it for ever.

    python -m ckanext.datagovuk.testing.rebuild_fast_fork_safe CKAN_INI
"""
from __future__ import annotations

import multiprocessing
import sys


def _rebuild(app, ids: list[str]) -> None:
    from ckan import model
    from ckan.lib.search import rebuild
    model.Session.remove()
    model.meta.engine.dispose(close=False)
    with app._wsgi_app.test_request_context():
        rebuild(package_ids=ids)


def _active_ids() -> list[str]:
    import sqlalchemy as sa
    from ckan.common import config
    engine = sa.create_engine(config["sqlalchemy.url"])
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(
            sa.text("SELECT id FROM package WHERE state = 'active'"))]


def main(ini: str) -> None:
    from ckan.cli import load_config
    from ckan.config.middleware import make_app
    app = make_app(load_config(ini))
    from ckan.lib.search import commit
    with app._wsgi_app.test_request_context():
        ids = _active_ids()
        count = multiprocessing.cpu_count()
        size = len(ids) // count
        chunks = [ids[i * size:(i + 1) * size] for i in range(count - 1)]
        chunks.append(ids[(count - 1) * size:])
        processes = [multiprocessing.Process(target=_rebuild, args=(app, chunk),
                                             daemon=True) for chunk in chunks]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        commit()


if __name__ == "__main__":
    main(sys.argv[1])
