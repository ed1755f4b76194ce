"""A private, throw-away Solr for tests, the demo and the benchmark (what
``localpg`` is for PostgreSQL).

``start()`` lays out a solr home in a fresh temporary directory: the node's
``solr.xml``, a ``ckan`` configset (our ``solrconfig.xml`` and CKAN's own
``schema.xml``, copied from the installed ``ckan`` package) and a ``ckan``
core made from it.  It then runs the launcher that ``make setup`` compiled
(``solr/LocalSolr.java``, Solr 9's ``JettySolrRunner`` on the jars Maven
fetched), which serves on a free loopback port and tells us which once every
core has loaded.  ``stop()`` ends the server and removes everything.  The
server also stops by itself when the process that started it dies.

    python -m ckanext.datagovuk.testing.localsolr run -- CMD [ARGS...]

starts Solr, runs CMD with ``CKAN_SOLR_URL`` pointing at the ``ckan`` core
(it overrides ``solr_url`` of any ini file), then stops Solr and exits with
CMD's status.
"""
from __future__ import annotations

import importlib.util
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from ckanext.datagovuk.testing import localpg

SOLR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "solr")
HOME_TEMPLATE = os.path.join(SOLR_DIR, "home")
JARS = os.path.join(SOLR_DIR, "target", "dependency")
LAUNCHER_JAR = os.path.join(SOLR_DIR, "target", "localsolr.jar")
LAUNCHER = "LocalSolr"
CORE = "ckan"
CONFIGSET = "ckan"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# A small heap that grows on demand; DATAGOVUK_SOLR_HEAP raises its ceiling
# for a large benchmark.  The serial collector starts no GC threads, which
# suits a one-user server on a small machine.
JVM_OPTIONS = [
    "-Xms64m",
    f"-Xmx{os.environ.get('DATAGOVUK_SOLR_HEAP', '1g')}",
    "-XX:+UseSerialGC",
    "-Xss1m",
    "-Djava.awt.headless=true",
]


def ckan_schema() -> str:
    """CKAN's own ``schema.xml``, from the installed ``ckan`` package."""
    spec = importlib.util.find_spec("ckan")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the ckan package is not installed: run make setup")
    return os.path.join(spec.submodule_search_locations[0],
                        "config", "solr", "schema.xml")


@dataclass
class Solr:
    directory: str
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def home(self) -> str:
        return os.path.join(self.directory, "home")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/solr"

    def core_url(self, core: str = CORE) -> str:
        return f"{self.base_url}/{core}"

    def logs(self) -> str:
        """The end of the launcher's and Solr's logs, for error messages."""
        return "\n".join(filter(None, (
            localpg.tail(os.path.join(self.directory, name))
            for name in ("launcher.log", "solr.log"))))

    def stop(self) -> None:
        """Stop the server (the launcher stops when its stdin closes) and
        remove its directory; safe to call more than once."""
        if self.process is not None:
            if self.process.stdin and not self.process.stdin.closed:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Solr":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _lay_out_home(home: str) -> None:
    shutil.copytree(HOME_TEMPLATE, home)
    shutil.copy(ckan_schema(), os.path.join(
        home, "configsets", CONFIGSET, "conf", "schema.xml"))


def _command(solr: Solr) -> list[str]:
    return ["java", *JVM_OPTIONS,
            f"-Dsolr.log.dir={solr.directory}",
            f"-Dlog4j2.configurationFile={os.path.join(SOLR_DIR, 'log4j2.xml')}",
            "-cp", os.pathsep.join([LAUNCHER_JAR, os.path.join(JARS, "*")]),
            LAUNCHER, solr.home]


def _read_port(solr: Solr) -> int:
    """The port the launcher prints once its cores have loaded."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([solr.process.stdout], [], [],
                                    deadline - time.monotonic())
        if not ready:
            break
        line = solr.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"Solr exited with status {solr.process.wait()}: {solr.logs()}")
        if line.startswith("port "):
            return int(line.split()[1])
    raise RuntimeError(f"Solr did not start in {START_TIMEOUT:.0f} s: "
                       f"{solr.logs()}")


def _launch(solr: Solr) -> subprocess.Popen:
    with open(os.path.join(solr.directory, "launcher.log"), "wb") as log:
        try:
            # Its own session: a Ctrl-C meant for CMD must not stop Solr
            # while CMD is still cleaning up; stop() ends it afterwards.
            return subprocess.Popen(
                _command(solr), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, start_new_session=True)
        except FileNotFoundError:
            raise RuntimeError("java is not installed: Solr needs Java 17"
                               ) from None


def start(parent: str | None = None) -> Solr:
    """Start a Solr with a ``ckan`` core in a new temporary directory."""
    if not os.path.exists(LAUNCHER_JAR):
        raise RuntimeError("Solr's jars and launcher are missing: run make setup")
    solr = Solr(directory=tempfile.mkdtemp(prefix="datagovuk-solr-", dir=parent))
    try:
        _lay_out_home(solr.home)
        solr.process = _launch(solr)
        solr.port = _read_port(solr)
    except BaseException:
        solr.stop()
        raise
    return solr


def environment(solr: Solr) -> dict[str, str]:
    return {"CKAN_SOLR_URL": solr.core_url()}


def run(command: list[str]) -> int:
    try:
        solr = start()
    except RuntimeError as error:
        print(f"Error: could not start a private Solr: {error}", file=sys.stderr)
        return 1
    return localpg.run_with(environment(solr), solr.stop,
                            f"private Solr at {solr.base_url} "
                            f"in {solr.directory}", command)


def main(argv: list[str] | None = None) -> int:
    return localpg.main_for(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
