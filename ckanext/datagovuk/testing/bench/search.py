"""The search index steps: CKAN's own ``ckan search-index rebuild`` and
``rebuild-fast`` against our ``datagovuk reindex``, on the migrated site of
a scale, into the run's private Solr, and whether their documents agree.

CKAN's ``rebuild-fast`` as shipped shares the parent's database connection
with its processes (one fails on it, another may wait for ever:
``searchbench`` shows it); its fork-safe copy is timed here.  CKAN's indexer
fails on a dataset with a relationship, and ``rebuild-fast`` has no ``-i``
to go on past one (a process that fails loses its whole share), so the
relationships are removed first: all three index the same datasets.
"""
from __future__ import annotations

import os
import sys

from ckanext.datagovuk import db
from ckanext.datagovuk.testing.searchbench import FORK_SAFE_REBUILD_FAST, Core

from .steps import Step

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
SAMPLE = 200


class SearchIndexSteps:
    """Part of ``Bench``: needs ``self.run``, ``self.solr``,
    ``self.write_ini``, ``self.command_env`` and ``self.cluster``."""

    def measure_search(self, target: str, suffix: str) -> None:
        names = [f"search_rebuild{suffix}", f"search_rebuild_fast{suffix}",
                 f"reindex{suffix}"]
        if not self.cluster.exists(target):
            for name in names:
                self.not_measured(name, name, "no migrated database")
            return
        ini = self.write_ini(target)
        conn = db.connect(self.cluster.url(target))
        try:
            with conn, conn.cursor() as cur:
                cur.execute("DELETE FROM package_relationship")
        finally:
            conn.close()
        core = Core(self.solr.core_url())
        ckan = os.path.join(VENV_BIN, "ckan")
        commands = [
            ("CKAN's ckan search-index rebuild -i (one process)",
             [ckan, "-c", ini, "search-index", "rebuild", "-i", "-q"]),
            ("CKAN's ckan search-index rebuild-fast (a process per CPU), "
             "fork-safe copy", [*FORK_SAFE_REBUILD_FAST, ini]),
            ("datagovuk reindex --drop-old (new core, verified, swapped)",
             [ckan, "-c", ini, "datagovuk", "reindex", "--drop-old"]),
        ]
        reference = None
        for name, (description, command) in zip(names, commands):
            core.empty()
            step = self.run(name, description, command, env=self.command_env())
            if not step.ok:
                continue
            step.details["documents"] = core.count()
            if reference is None:
                reference = core.documents(core.sample_ids(SAMPLE))
            else:
                self.compare(step, core, reference)
            self.save()

    def compare(self, step: Step, core: Core, reference: dict) -> None:
        found = core.documents(sorted(reference))
        step.details["sample_compared"] = len(reference)
        step.details["sample_differing"] = sum(
            1 for key, doc in reference.items() if found.get(key) != doc)
