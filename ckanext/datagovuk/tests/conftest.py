"""Fixtures shared by the whole suite.

`make test` runs pytest inside a private PostgreSQL cluster
(``ckanext.datagovuk.testing.localpg``) and a private Solr
(``ckanext.datagovuk.testing.localsolr``) and exports their URLs; nothing
here touches a system-wide PostgreSQL or Solr.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import db

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TEST_INI = os.path.join(ROOT, "test.ini")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `make test`, "
                    "which starts a private PostgreSQL and Solr", returncode=2)
    return value


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Superuser URL of the private cluster."""
    return _required_env("DATAGOVUK_PG_ADMIN_URL")


@pytest.fixture(scope="session")
def ckan_db_url() -> str:
    """URL of the database CKAN's test session is configured with."""
    return _required_env("CKAN_SQLALCHEMY_URL")


@pytest.fixture(scope="session")
def ckan_solr_url() -> str:
    """URL of the Solr core CKAN's test session searches (overrides
    ``solr_url`` of test.ini)."""
    return _required_env("CKAN_SOLR_URL")


def admin_execute(admin_url: str, statement: str, params=None) -> None:
    conn = db.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        conn.close()


def drop_database(admin_url: str, name: str) -> None:
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(admin_url: str, ckan_url: str, name: str,
                    template: str | None = None) -> str:
    """The database ``name``, owned by the CKAN role, empty or a copy of
    ``template``; returns the URL the CKAN role connects with."""
    url = db.with_database(ckan_url, name)
    db.create_database(url, admin_url, template=template or "template1")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def _database_factory(admin_url: str, ckan_url: str, prefix: str):
    created = []

    def make(template: str | None = None, name: str | None = None) -> str:
        name = name or f"{prefix}_{uuid.uuid4().hex[:12]}"
        url = create_database(admin_url, ckan_url, name, template)
        created.append(name)
        return url

    try:
        yield make
    finally:
        for name in created:
            drop_database(admin_url, name)


@pytest.fixture
def make_database(pg_admin_url, ckan_db_url):
    """Factory: a new empty database owned by the CKAN role, dropped after
    the test. ``make_database(template=NAME)`` copies a template database.
    Returns the URL the CKAN role connects with."""
    with _database_factory(pg_admin_url, ckan_db_url, "t") as make:
        yield make


@pytest.fixture
def engine_for():
    """SQLAlchemy engines for URLs, disposed of after the test."""
    engines = []

    def make(url):
        engine = create_engine(url, poolclass=NullPool)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def run_command(args: list[str], db_url: str | None = None,
                env: dict | None = None, timeout: int = 900,
                cwd: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a program of the venv (``ckan``, ``paster``) as an operator would,
    in its own process, with ``CKAN_SQLALCHEMY_URL`` pointing at ``db_url``."""
    full_env = dict(os.environ)
    if db_url:
        full_env["CKAN_SQLALCHEMY_URL"] = db_url
    full_env.update(env or {})
    program = args[0]
    if os.path.exists(os.path.join(VENV_BIN, program)):
        program = os.path.join(VENV_BIN, program)
    return subprocess.run([program, *args[1:]], env=full_env, text=True,
                          capture_output=True, timeout=timeout,
                          cwd=cwd or ROOT, **kwargs)


def ckan_datagovuk(args: list[str], db_url: str | None = None, **kwargs):
    """``ckan -c test.ini datagovuk ARGS`` in a subprocess."""
    return run_command(["ckan", "-c", TEST_INI, "datagovuk", *args],
                       db_url=db_url, **kwargs)


def paster_datagovuk(args: list[str], db_url: str | None = None, **kwargs):
    """``paster datagovuk ARGS -c test.ini`` in a subprocess, run from ``/``
    so that only the global paster command can be found."""
    kwargs.setdefault("cwd", "/")
    return run_command(["paster", "datagovuk", *args, "-c", TEST_INI],
                       db_url=db_url, **kwargs)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The stderr of a failed command, asserted to be one ``Error:`` line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    return lines[0]


# --- The old site (ckanext.datagovuk.testing.oldsite) -------------------------------
OLD_SITE_DATASETS = 150
OLD_SITE_SEED = 1


def _build_old_site_template(admin_url: str, ckan_url: str, name: str,
                             harvest: bool) -> str:
    """A template database holding a generated old site, owned by the CKAN
    role; built in this process on its own (NullPool) connections, so no
    connection stays open and it can be copied at once."""
    from ckanext.datagovuk.testing import oldsite

    drop_database(admin_url, name)
    oldsite.generate(create_database(admin_url, ckan_url, name),
                     datasets=OLD_SITE_DATASETS, seed=OLD_SITE_SEED,
                     harvest=harvest)
    return name


@pytest.fixture(scope="session")
def old_site_template(pg_admin_url, ckan_db_url):
    """Name of a template database holding an old site (CKAN 2.2 schema,
    DGU and harvest tables, ``OLD_SITE_DATASETS`` datasets). Copy it with
    ``make_database(template=old_site_template)`` (or use ``old_site``);
    never connect to it directly."""
    name = _build_old_site_template(pg_admin_url, ckan_db_url,
                                    "oldsite_template", harvest=True)
    yield name
    drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def old_site_template_no_harvest(pg_admin_url, ckan_db_url):
    """As ``old_site_template``, without the old harvest tables."""
    name = _build_old_site_template(pg_admin_url, ckan_db_url,
                                    "oldsite_template_no_harvest",
                                    harvest=False)
    yield name
    drop_database(pg_admin_url, name)


class LegacySiteTemplates:
    """Template databases of small generated sites at legacy versions,
    each built on first use: ``templates[82]`` is the name of one at
    legacy 82. Copy them with ``make_database(template=...)``."""

    def __init__(self, admin_url: str, ckan_url: str):
        self.admin_url, self.ckan_url = admin_url, ckan_url
        self.names: dict[int, str] = {}

    def __getitem__(self, version: int) -> str:
        from ckanext.datagovuk.testing import oldsite

        if version not in self.names:
            name = f"legacy_{version}_template"
            drop_database(self.admin_url, name)
            oldsite.generate(create_database(self.admin_url, self.ckan_url,
                                             name),
                             datasets=oldsite.MIN_DATASETS, version=version)
            self.names[version] = name
        return self.names[version]

    def drop(self) -> None:
        for name in self.names.values():
            drop_database(self.admin_url, name)


@pytest.fixture(scope="session")
def legacy_site_templates(pg_admin_url, ckan_db_url):
    """:class:`LegacySiteTemplates` shared by the whole session."""
    templates = LegacySiteTemplates(pg_admin_url, ckan_db_url)
    yield templates
    templates.drop()


@pytest.fixture
def old_site(make_database, old_site_template) -> str:
    """URL (CKAN role) of a fresh copy of the old site, dropped after the
    test."""
    return make_database(template=old_site_template)


@pytest.fixture
def old_site_no_harvest(make_database, old_site_template_no_harvest) -> str:
    """URL of a fresh copy of the old site without harvest tables."""
    return make_database(template=old_site_template_no_harvest)


@pytest.fixture(scope="session")
def old_site_dump(tmp_path_factory, old_site_template, ckan_db_url) -> str:
    """Path of a custom-format (``pg_dump -Fc -O -x``) dump of the old site."""
    from ckanext.datagovuk.testing import oldsite

    path = str(tmp_path_factory.mktemp("oldsite") / "oldsite.dump")
    oldsite.write_dump(db.with_database(ckan_db_url, old_site_template), path)
    return path


@pytest.fixture(scope="session")
def ckan_head_template(pg_admin_url, ckan_db_url):
    """Name of a template database at CKAN's head schema, built once per
    session with CKAN's own ``ckan db init``; copy it with
    ``make_database(template=ckan_head_template)``."""
    name = f"tmpl_head_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, ckan_db_url, name)
    result = run_command(["ckan", "-c", TEST_INI, "db", "init"], db_url=url)
    assert result.returncode == 0, result.stderr
    yield name
    drop_database(pg_admin_url, name)


# --- migrate (B2): module-scoped databases and whole-database dumps ---------
@pytest.fixture(scope="module")
def make_module_database(pg_admin_url, ckan_db_url):
    """As ``make_database``, but the databases live for the whole test
    module (for results several tests inspect, e.g. one migrated site)."""
    with _database_factory(pg_admin_url, ckan_db_url, "m") as make:
        yield make


def dump_database(url: str, *options: str) -> str:
    """``pg_dump`` of the whole database (every schema, schema and data,
    or as ``options`` say) as plain text, without the random
    ``\\restrict`` key lines pg_dump 15.18 adds, for comparing states."""
    result = subprocess.run(["pg_dump", "--no-owner", "--no-acl", *options],
                            env=db.libpq_env(url), text=True,
                            capture_output=True, check=True)
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


@pytest.fixture(scope="session")
def migrated_old_site_template(pg_admin_url, ckan_db_url, old_site_template):
    """Name of a template database holding the old site after a full
    ``ckan -c test.ini datagovuk migrate --resolve-email-clash keep-oldest``
    (no promotion yet); copy it with ``make_database(template=...)``."""
    name = f"tmpl_migrated_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, ckan_db_url, name, old_site_template)
    result = ckan_datagovuk(["migrate", "--resolve-email-clash", "keep-oldest"],
                            db_url=url)
    assert result.returncode == 0, result.stderr
    yield name
    drop_database(pg_admin_url, name)


pytest_plugins = ["ckanext.datagovuk.tests.faults_report"]


@pytest.fixture(scope="module")
def ssh_server():
    """A private sshd on loopback playing the old site's host
    (``localssh``), shared by a test module."""
    from ckanext.datagovuk.testing import localssh
    server = localssh.start()
    yield server
    server.stop()


def run_sql(url, statement, params=None):
    """Run ``statement`` on ``url`` (autocommit); its rows, if it has any."""
    conn = db.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


# ckanext-doi's row of the shared migrate_version table, as its docs show.
DOI_MIGRATE_VERSION_ROW = (
    "DOI", "/usr/lib/ckan/default/src/ckanext-doi/ckanext/doi/migration", 2)


def put_another_extensions_row_first(url: str) -> None:
    """Store ckanext-doi's row of ``migrate_version`` before CKAN's, as a
    real site has it after a legacy ``paster db upgrade`` rewrote CKAN's
    row (a fresh heap is read in insertion order)."""
    rows = run_sql(url, "SELECT * FROM migrate_version")
    run_sql(url, "DELETE FROM migrate_version")
    run_sql(url, "VACUUM FULL migrate_version")
    for row in [DOI_MIGRATE_VERSION_ROW, *rows]:
        run_sql(url, "INSERT INTO migrate_version VALUES (%s, %s, %s)", row)
    assert run_sql(url, "SELECT version FROM migrate_version")[0][0] == 2


# A stand-in for the remote pg_dump, given to import with --remote-pg-dump
# (run on the "remote host" through ssh). It sends the first BURST bytes
# (past the table of contents, so pg_restore is already loading) and
# touches a marker file, so a test can act mid-stream deterministically:
#   trickle: the first BURST bytes, then 1 KiB every 0.2 s, until cut;
#   fail:    the first BURST bytes, then pg_dump's error and exit 1.
# Uncompressed (-Z0: the import compresses it with zstd on the way) the
# burst is 4 x BURST: zstd sends each 128 KB block only once the next has
# begun, and the burst must reach the import past the table of contents.
# Asked for a directory-format dump (--remote-format directory), it makes the
# dump; the import's remote script sends each table's data file as pg_dump's
# log reports it finished, and notes it in the file "sent".  Once they are
# all sent (the burst: everything but toc.dat), it touches the marker, then
# fails, or holds the transfer open until the import is stopped (the
# script's EXIT trap kills it and removes the directory).
REMOTE_PG_DUMP = """#!{python}
import os, subprocess, sys, time
if sys.argv[1:] == ["--version"]:
    os.execvp("pg_dump", ["pg_dump", "--version"])

def burst_sent():
    open({marker!r}, "w").close()
    if {mode!r} == "fail":
        sys.stderr.write('pg_dump: error: Dumping the contents of table '
                         '"package" failed: PQgetResult() failed.\\n')
        sys.exit(1)

if "-Fd" in sys.argv:
    subprocess.run(["pg_dump", *sys.argv[1:]], check=True)
    directory = sys.argv[sys.argv.index("-f") + 1]
    sent = os.path.join(os.path.dirname(directory), "sent")
    data = {{name for name in os.listdir(directory) if name[0].isdigit()}}
    while not data <= set(open(sent).read().split()):
        time.sleep(0.05)
    burst_sent()
    while os.path.isdir(directory):
        time.sleep(0.2)
    sys.exit(1)
dump = subprocess.Popen(["pg_dump", *sys.argv[1:]], stdout=subprocess.PIPE)
out = sys.stdout.buffer
try:
    out.write(dump.stdout.read({burst} * (4 if "-Z0" in sys.argv else 1)))
    out.flush()
    burst_sent()
    while True:
        chunk = dump.stdout.read(1024)
        if not chunk:
            break
        out.write(chunk)
        out.flush()
        time.sleep(0.2)
finally:
    dump.kill()
"""
BURST = 320 << 10


def remote_pg_dump(tmp_path, mode: str) -> tuple[str, str]:
    """A wrapped remote pg_dump (``trickle`` or ``fail``, see above) and the
    file it touches once the burst is out."""
    marker = str(tmp_path / f"burst-sent-{mode}")
    script = tmp_path / f"pg_dump_{mode}"
    script.write_text(REMOTE_PG_DUMP.format(python=sys.executable,
                                            burst=BURST, marker=marker,
                                            mode=mode))
    script.chmod(0o755)
    return str(script), marker
