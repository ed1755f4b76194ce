"""The staging database's search index, for ``migrate --from``.

Built into a new Solr core by a child ``ckan datagovuk reindex --into CORE
--no-swap`` (CKAN's model is bound to the configured database, the child's
to the staging one through ``CKAN_SQLALCHEMY_URL``).  The core is swapped in
right before the database, and swapped back if the database swap fails, so
the site never serves the new database with the old index for more than
that moment.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from ckanext.datagovuk import output
from ckanext.datagovuk.search import reindex
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.search.solr import SolrCores

Echo = Callable[[str], None]


def _json_object(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _ckan_program() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ckan")
    return beside if os.path.exists(beside) else "ckan"


@dataclass
class StagingIndex:
    """The staging database's search index: built into ``core`` by a child
    ``ckan`` process, swapped in together with the database."""
    cores: SolrCores
    ini: str
    core: str
    built: bool = False

    @classmethod
    def for_config(cls, config) -> "StagingIndex":
        """Refuses a Solr that does not answer, or whose live core has a
        schema this CKAN does not accept, before anything starts."""
        cores = SolrCores.from_config(config)
        reindex.check_solr(cores)
        return cls(cores, config["__file__"],
                   f"{cores.live}-migrate-{time.strftime('%Y%m%d%H%M%S')}")

    def build(self, staging_url: str, echo: Echo) -> list[str]:
        """Run the child; show its progress live; its report lines."""
        command = [_ckan_program(), "-c", self.ini, "datagovuk", "reindex",
                   "--into", self.core, "--no-swap", "--json"]
        child = subprocess.Popen(
            command, env={**os.environ, "CKAN_SQLALCHEMY_URL": staging_url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        errors = []
        try:
            # With --json the child's progress comes on stderr, its one
            # JSON object on stdout.
            for line in child.stderr:
                line = line.strip().replace("\x1b[K", "").split("\r")[-1]
                if line.startswith("Error: "):
                    errors.append(line.removeprefix("Error: "))
                elif line:
                    output.live(echo, f"reindex: {line}")
            found = _json_object(child.stdout.read())
        except BaseException:
            # The child drops its core itself when it is stopped.
            child.terminate()
            child.wait()
            raise
        if child.wait() != 0 or not found.get("ok"):
            reason = (found.get("error") or (errors[-1] if errors else
                      f"exit status {child.returncode}"))
            raise OperatorError(f"indexing the staging database failed: "
                                f"{reason}")
        self.built = True
        failures = reindex.format_failures(found["failures"])
        for line in failures:
            output.detail(echo, line)
        return [f"{found['datasets']} datasets indexed into core {self.core}"
                + (f", {len(found['failures'])} left out: CKAN's own indexer "
                   "fails on them (-v lists them)" if failures else "")]

    @contextlib.contextmanager
    def swapped_in(self):
        """The new core swapped with the live one; swapped back if what
        runs meanwhile (the database swap) fails."""
        if not self.built:
            yield
            return
        self.cores.swap(self.cores.live, self.core)
        try:
            yield
        except BaseException:
            self.cores.swap(self.cores.live, self.core)
            raise

    def drop(self) -> None:
        with contextlib.suppress(OperatorError):
            self.cores.unload(self.core)


def previous_index_lines(staging_index: StagingIndex, drop_old: bool) -> list[str]:
    live = staging_index.cores.live
    if drop_old:
        staging_index.drop()
        return [f"swapped in as core {live} with the database, the previous "
                "index dropped"]
    return [f"swapped in as core {live} with the database, the previous "
            f"index kept as core {staging_index.core} (drop it with "
            "CoreAdmin UNLOAD)"]
