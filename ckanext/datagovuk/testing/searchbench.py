"""The search index benchmark: CKAN's own ``ckan search-index rebuild`` and
``rebuild-fast`` against our ``datagovuk reindex``, on the same migrated site
and in one run, with a check that the documents are the same.

Inside a private PostgreSQL and Solr (``localpg run -- localsolr run --``)
it generates an old site of ``--datasets`` datasets, migrates it in place
(``datagovuk migrate``), then times each indexer as an operator runs it (a
``ckan -c INI`` subprocess) into an emptied live core:

* ``ckan search-index rebuild -i`` (one process, one document per
  request; ``-i`` goes on past the datasets CKAN cannot index);
* ``ckan search-index rebuild-fast`` (one process per CPU); its processes
  share the parent's database connection, and one may fail on it while
  another waits on it for ever: given as long as ``rebuild`` took and half
  again, when it fails, is stopped or indexes nothing, a fork-safe copy of
  it (each process drops the parent's connections first) is timed instead
  and marked so;
* ``ckan datagovuk reindex --drop-old`` (into a new core, verified, swapped).

The stored fields of a sample of datasets, as each indexer left them, are
compared with ``rebuild``'s (all but the index timestamps).  Results go to
``OUTPUT/searchbench.json`` and ``OUTPUT/searchbench.txt``.  Heavy: run it
under ``flock /work/heavy.lock``.

    python -m ckanext.datagovuk.testing.localpg run -- \\
        python -m ckanext.datagovuk.testing.localsolr run -- \\
        python -m ckanext.datagovuk.testing.searchbench --datasets 5000
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

from ckanext.datagovuk import db
from ckanext.datagovuk.testing import demo, oldsite

BIN = os.path.dirname(os.path.abspath(sys.executable))
DATABASE = "ckan_searchbench"
# Set by Solr at indexing time, so never equal between two indexes.
VOLATILE_FIELDS = {"indexed_ts", "_version_"}
TARGETS = {"rebuild": 3.0, "rebuild_fast": 1.5}

# CKAN's rebuild-fast, made fork-safe: a module of its own.
FORK_SAFE_REBUILD_FAST = [sys.executable, "-m",
                          "ckanext.datagovuk.testing.rebuild_fast_fork_safe"]


def _say(message: str) -> None:
    print(message, flush=True)


class Core:
    """The live core, read and emptied over HTTP."""

    def __init__(self, url: str):
        self.url = url

    def _select(self, **params) -> dict:
        reply = requests.get(f"{self.url}/select", timeout=300,
                             params={**params, "wt": "json"})
        reply.raise_for_status()
        return reply.json()["response"]

    def count(self) -> int:
        return self._select(q="*:*", rows=0)["numFound"]

    def documents(self, ids: list[str]) -> dict[str, dict]:
        docs = {}
        for start in range(0, len(ids), 50):
            query = " OR ".join(f'"{i}"' for i in ids[start:start + 50])
            for doc in self._select(q=f"id:({query})", rows=50)["docs"]:
                docs[doc["id"]] = {key: value for key, value in doc.items()
                                   if key not in VOLATILE_FIELDS}
        return docs

    def sample_ids(self, size: int) -> list[str]:
        found = self._select(q="*:*", fl="id", rows=size, sort="id asc")
        return [doc["id"] for doc in found["docs"]]

    def empty(self) -> None:
        reply = requests.post(f"{self.url}/update", timeout=300,
                              params={"commit": "true"},
                              json={"delete": {"query": "*:*"}})
        reply.raise_for_status()


class SearchBench:
    def __init__(self, options: argparse.Namespace, workdir: str):
        self.options = options
        base_url = os.environ["CKAN_SQLALCHEMY_URL"]
        self.url = db.with_database(base_url, DATABASE)
        self.ini = os.path.join(workdir, "ckan.ini")
        self.log_dir = os.path.join(options.output, "logs")
        self.core = Core(os.environ["CKAN_SOLR_URL"])
        self.env = {key: value for key, value in os.environ.items()
                    if key != "CKAN_SQLALCHEMY_URL"}
        self.steps: dict[str, dict] = {}

    def ckan(self, name: str, args: list[str], timeout: float | None = None,
             check: bool = True) -> tuple[float, str | None]:
        """Run ``ckan -c INI ARGS`` (output to a log), in its own process
        group, stopped after ``timeout`` seconds; its seconds, and why it
        failed (None: it did not)."""
        os.makedirs(self.log_dir, exist_ok=True)
        log_path = os.path.join(self.log_dir, f"{name}.log")
        started = time.monotonic()
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [os.path.join(BIN, args[0]), *args[1:]], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait(timeout=timeout)
                failure = None if returncode == 0 else \
                    f"exit {returncode}: see {log_path}"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                failure = f"not done after {timeout:.0f} s: stopped"
        seconds = time.monotonic() - started
        if failure and check:
            raise SystemExit(f"{name} failed ({failure})")
        return seconds, failure

    def build_site(self) -> None:
        _say(f"== generating an old site of {self.options.datasets} datasets")
        db.create_database(self.url, os.environ.get("DATAGOVUK_PG_ADMIN_URL"))
        oldsite.generate(self.url, datasets=self.options.datasets,
                         seed=self.options.seed)
        demo.write_config(self.ini, self.url.render_as_string(
            hide_password=False), oldsite.KNOWN_CASES.site_user, {})
        _say("== migrating it in place")
        self.ckan("migrate", ["ckan", "-c", self.ini, "datagovuk", "migrate",
                              "--resolve-email-clash", "keep-oldest"])
        # CKAN's indexer fails on a dataset with a relationship; rebuild-fast
        # has no -i to go on past it, and a process of it that fails loses
        # its whole share: the same work for all three without them.
        conn = db.connect(self.url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("DELETE FROM package_relationship")
        finally:
            conn.close()

    def measure(self, name: str, args: list[str], timeout: float | None = None,
                check: bool = True) -> dict:
        self.core.empty()
        _say(f"== {name}: {' '.join(args)}")
        seconds, failure = self.ckan(name, args, timeout, check)
        step = {"command": " ".join(args), "seconds": round(seconds, 2),
                "documents": self.core.count()}
        if failure:
            step["failure"] = failure
        _say(f"   {step['seconds']} s, {step['documents']} documents"
             + (f" ({failure})" if failure else ""))
        self.steps[name] = step
        return step

    def measure_rebuild_fast(self) -> None:
        """CKAN's own, given as long as one-process rebuild took and half
        again: its processes share the parent's database connection, and
        may fail or wait on it for ever."""
        limit = self.steps["rebuild"]["seconds"] * 1.5
        step = self.measure("rebuild_fast", [
            "ckan", "-c", self.ini, "search-index", "rebuild-fast"],
            timeout=limit, check=False)
        if step.get("failure") or step["documents"] == 0:
            self.steps["rebuild_fast_as_shipped"] = self.steps.pop(
                "rebuild_fast")
            _say("   rebuild-fast as shipped did not index the site: timing "
                 "its fork-safe copy")
            step = self.measure("rebuild_fast", [*FORK_SAFE_REBUILD_FAST, self.ini])
            step["fork_safe_copy"] = True

    def compare(self, reference: dict[str, dict], name: str) -> None:
        found = self.core.documents(sorted(reference))
        differing = sorted(i for i in reference if found.get(i) != reference[i])
        self.steps[name]["sample_compared"] = len(reference)
        self.steps[name]["sample_differing"] = len(differing)
        if differing:
            first = differing[0]
            fields = sorted(key for key in set(reference[first]) | set(
                found.get(first, {})) if reference[first].get(key)
                != found.get(first, {}).get(key))
            self.steps[name]["first_difference"] = {"id": first,
                                                    "fields": fields}
        _say(f"   sample of {len(reference)}: {len(differing)} differ")

    def run(self) -> dict:
        self.build_site()
        self.measure("rebuild", ["ckan", "-c", self.ini, "search-index",
                                 "rebuild", "-i", "-q"])
        reference = self.core.documents(self.core.sample_ids(
            self.options.sample))
        self.measure_rebuild_fast()
        self.compare({i: doc for i, doc in reference.items()
                      if doc["state"] == "active"}, "rebuild_fast")
        args = ["ckan", "-c", self.ini, "datagovuk", "reindex", "--drop-old"]
        if self.options.workers:
            args += ["--workers", str(self.options.workers)]
        self.measure("reindex", args)
        self.compare(reference, "reindex")
        return self.results()

    def results(self) -> dict:
        ours = self.steps["reindex"]["seconds"]
        ratios = {name: {"ratio": round(self.steps[name]["seconds"] / ours, 2),
                         "target": target,
                         "met": self.steps[name]["seconds"] / ours >= target}
                  for name, target in TARGETS.items()}
        return {"datasets": self.options.datasets, "cpus": os.cpu_count(),
                "loadavg_at_end": os.getloadavg(), "steps": self.steps,
                "speedup": ratios}


def format_text(results: dict) -> str:
    lines = [f"Search index, {results['datasets']} datasets, "
             f"{results['cpus']} CPUs, one run (load average at the end "
             + " ".join(f"{load:.1f}" for load in results["loadavg_at_end"])
             + "):"]
    for name, step in results["steps"].items():
        note = " (fork-safe copy)" if step.get("fork_safe_copy") else ""
        if step.get("failure"):
            note += f" ({step['failure']})"
        sample = (f", sample {step['sample_compared']} compared, "
                  f"{step['sample_differing']} differ"
                  if "sample_compared" in step else "")
        lines.append(f"  {name:<24} {step['seconds']:>8.1f} s  "
                     f"{step['documents']} docs{sample}{note}")
    for name, ratio in results["speedup"].items():
        lines.append(f"  {name} / reindex = {ratio['ratio']:.2f} "
                     f"(target >= {ratio['target']}: "
                     f"{'met' if ratio['met'] else 'missed'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=200,
                        help="datasets whose documents are compared")
    parser.add_argument("--workers", type=int, default=None,
                        help="reindex --workers (default: its own)")
    parser.add_argument("--output", default="searchbench-results")
    options = parser.parse_args(argv)
    if not os.environ.get("CKAN_SQLALCHEMY_URL") or \
            not os.environ.get("CKAN_SOLR_URL"):
        print("Error: run inside localpg run -- localsolr run --",
              file=sys.stderr)
        return 2
    os.makedirs(options.output, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="datagovuk-searchbench-") as work:
        results = SearchBench(options, work).run()
    text = format_text(results)
    print(text)
    with open(os.path.join(options.output, "searchbench.json"), "w") as out:
        json.dump(results, out, indent=2)
    with open(os.path.join(options.output, "searchbench.txt"), "w") as out:
        out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
