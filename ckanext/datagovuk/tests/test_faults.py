"""Fault injection: each fault at each step of moving an old site
(``import`` -> ``migrate`` -> ``promote``), asserting the whole outcome.

Nothing is mocked: the private PostgreSQL plays both servers, a loopback
``sshd`` (``localssh``) plays the old site's host, and the real commands run
in processes of their own.  Every failing case asserts that

* the target database is unchanged (its ``pg_dump`` is identical) or
  complete, never in between;
* the source database is never modified;
* no staging database (``transfer.staging_name``) is left;
* the command failed with one ``Error:`` line and a non-zero exit;
* running again once the fault is removed succeeds.

Each test carries ``@pytest.mark.fault(step, fault, outcome)``; the plugin
``faults_report`` turns the results into ``docs/faults.rst``.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import pytest

from ckanext.datagovuk import db, settings, transfer, workdir
from ckanext.datagovuk.testing import localpg, oldsite
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, VENV_BIN, admin_execute, ckan_datagovuk, create_database,
    drop_database,
    dump_database, one_line_error, paster_datagovuk, remote_pg_dump,
    run_command)

fault = pytest.mark.fault
MIGRATE = ["migrate", "--resolve-email-clash", "keep-oldest"]
CONFIGURED_SYSADMIN = oldsite.KNOWN_CASES.sysadmins_with_membership[0]
SHIPPED_001 = os.path.join(os.path.dirname(settings.__file__), "migrations",
                           "001_bytemark_to_govuk.sql")
# Bytes the stand-in remote pg_dump sends at full speed: past the table of
# contents, so the restore is already loading when the fault strikes.
# How long an injected pg_sleep holds a step, long enough for a test to
# see it (pg_stat_activity) and strike.
HOLD_SECONDS = 3

class StagingLeftBehind(AssertionError):
    """A run left a staging database behind."""




# --------------------------------------------------------------------------
# The source, the target and the servers

@dataclass
class Source:
    url: str
    conninfo: str       # what --remote-db gets: the "remote" pg_dump's DSN
    fingerprint: str    # pg_dump of the whole database when the module began


@pytest.fixture(scope="module")
def source(pg_admin_url, ckan_db_url, old_site_template):
    """The old site's database on the "remote host" (a copy of the old
    site template, read by the remote pg_dump through a DSN)."""
    name = f"faults_source_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, ckan_db_url, name, old_site_template)
    conninfo = (f"host=127.0.0.1 port={db.parse(url).port} dbname={name} "
                f"user={db.parse(url).username}")
    yield Source(url, conninfo, dump_database(url))
    drop_database(pg_admin_url, name)


@pytest.fixture
def target(make_database, pg_admin_url):
    """The new site's database before the move: it holds a marker, so that
    "unchanged" means something.  Databases an import left under the
    target's name (the replaced one) go with it."""
    url = make_database()
    sql(url, "CREATE TABLE marker (note text); "
             "INSERT INTO marker VALUES ('the new site before the move')")
    yield url
    name = db.parse(url).database
    for leftover in sql(pg_admin_url, "SELECT datname FROM pg_database "
                        "WHERE datname LIKE %s", (f"{name}\\_\\_%",)):
        drop_database(pg_admin_url, leftover[0])


@pytest.fixture
def cluster():
    """The suite's own PostgreSQL cluster (started by ``localpg run``)."""
    directory = os.environ.get("DATAGOVUK_PG_DIR")
    port = os.environ.get("DATAGOVUK_PG_PORT")
    if not directory or not port:
        pytest.skip("not run inside `localpg run` (DATAGOVUK_PG_DIR unset): "
                    "no cluster of our own to restart")
    return localpg.Cluster(directory=directory, port=int(port))


def restart_postgres(cluster: localpg.Cluster, down_seconds: float = 2.0
                     ) -> None:
    """Stop the server (``pg_ctl stop -m fast``: every session is cut),
    keep it down for ``down_seconds`` so the command under test meets a
    server that is gone, then start it again as ``localpg`` did.  (Not
    ``Cluster.restart()``: it captures pg_ctl's output, the new postmaster
    inherits those pipes and never closes them, so it never returns.)"""
    pg_ctl = [os.path.join(localpg.PG_BIN, "pg_ctl"), "-D", cluster.datadir,
              "-w", "-t", "60"]
    options = " ".join(f"-c {key}={value}" for key, value
                       in localpg.SANDBOX_SETTINGS.items())
    for command in ([*pg_ctl, "-m", "fast", "stop"],
                    [*pg_ctl, "-l", os.path.join(cluster.directory,
                                                 "server.log"),
                     "-o", f"-p {cluster.port} -k {cluster.socket_dir} "
                           f"{options}", "start"]):
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        if "stop" in command:
            time.sleep(down_seconds)
    # Pooled connections of this process died with the server.
    if "ckan.model" in sys.modules:
        from ckan import model
        model.Session.remove()
        model.meta.engine.dispose()


@pytest.fixture
def migrations_dir(tmp_path):
    """A --migrations-dir holding the shipped 001 and whatever a test adds."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    shutil.copyfile(SHIPPED_001, directory / "001_bytemark_to_govuk.sql")
    return directory


@pytest.fixture
def tiny_tablespace(pg_admin_url, ckan_db_url):
    """A tablespace on a 2 MB tmpfs that the CKAN role's new tables go to
    (``ALTER ROLE ... SET default_tablespace``): the disk that fills up.
    Yields a function that removes the fault."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the tablespace needs root")
    role = db.parse(ckan_db_url).username
    name = f"faults_tiny_{uuid.uuid4().hex[:6]}"
    mount_point = tempfile.mkdtemp(prefix="datagovuk-tiny-disk-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700",
                    "tmpfs", mount_point], check=True, capture_output=True)
    try:
        shutil.chown(mount_point, user="postgres", group="postgres")
        admin_execute(pg_admin_url, f"CREATE TABLESPACE {name} "
                                    f"LOCATION '{mount_point}'")
        admin_execute(pg_admin_url, f"GRANT CREATE ON TABLESPACE {name} "
                                    f"TO {role}")
        admin_execute(pg_admin_url, f"ALTER ROLE {role} SET "
                                    f"default_tablespace = '{name}'")

        def remove_fault():
            admin_execute(pg_admin_url,
                          f"ALTER ROLE {role} RESET default_tablespace")

        yield remove_fault
    finally:
        admin_execute(pg_admin_url,
                      f"ALTER ROLE {role} RESET default_tablespace")
        admin_execute(pg_admin_url, f"DROP TABLESPACE IF EXISTS {name}")
        if subprocess.run(["umount", mount_point],
                          capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        os.rmdir(mount_point)


# --------------------------------------------------------------------------
# Helpers

def sql(url, statement, params=None) -> list[tuple]:
    conn = db.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def database_name(url) -> str:
    return db.parse(url).database


def staging_databases(admin_url) -> list[str]:
    """Every database named like an import's staging database (of any
    target: one failed import must not leave one for anybody)."""
    marker = transfer.staging_name("x", 12345)[1:-len("12345")]
    pattern = "%" + marker.replace("_", "\\_") + "%"
    return [row[0] for row in sql(
        admin_url, "SELECT datname FROM pg_database WHERE datname LIKE %s",
        (pattern,))]


def import_args(server, source: Source, *extra: str) -> list[str]:
    return ["import", server.destination, "--remote-db", source.conninfo,
            "--ssh-port", str(server.port), "--identity", server.identity_file,
            "--ssh-option", f"UserKnownHostsFile={server.known_hosts_file}",
            "--replace", "--drop-old", *extra]


def start(program: str, args: list[str], db_url: str,
          env: dict | None = None) -> subprocess.Popen:
    """``paster datagovuk ARGS -c test.ini`` or ``ckan -c test.ini
    datagovuk ARGS``, started in the background."""
    env = {**os.environ, "CKAN_SQLALCHEMY_URL": db_url, **(env or {})}
    if program == "paster":
        command = [os.path.join(VENV_BIN, "paster"), "datagovuk", *args,
                   "-c", TEST_INI]
    else:
        command = [os.path.join(VENV_BIN, "ckan"), "-c", TEST_INI,
                   "datagovuk", *args]
    return subprocess.Popen(command, cwd="/", env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen, timeout: int = 300
           ) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode,
                                       stdout, stderr)


def wait_until(condition, process: subprocess.Popen, what: str,
               timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            result = finish(process)
            pytest.fail(f"the command ended before {what}: "
                        f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_mid_transfer(process: subprocess.Popen, marker: str,
                      admin_url) -> None:
    """Until the trickling remote pg_dump has sent its burst and the
    import's staging database exists."""
    wait_until(lambda: os.path.exists(marker), process, "the dump flowed")
    wait_until(lambda: staging_databases(admin_url), process,
               "the staging database was created")


def assert_import_succeeds(server, source: Source, target: str,
                           admin_url) -> None:
    """The re-run once the fault is gone: a plain import, complete."""
    result = paster_datagovuk(import_args(server, source), db_url=target)
    assert result.returncode == 0, result.stderr
    assert_imported(target, source, admin_url)


def sleeping_in(admin_url, database: str) -> bool:
    """A session of ``database`` is inside an injected pg_sleep."""
    return bool(sql(admin_url, "SELECT 1 FROM pg_stat_activity WHERE "
                               "datname = %s AND wait_event = 'PgSleep'",
                    (database,)))


def assert_failed_cleanly(result, target_url: str, target_before: str,
                          admin_url: str, source: Source | None = None) -> str:
    """The outcome every fault must have; returns the error line."""
    message = one_line_error(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert ":pass@" not in result.stdout + result.stderr
    assert dump_database(target_url) == target_before, \
        "the target database changed"
    left = staging_databases(admin_url)
    if left:
        raise StagingLeftBehind(f"staging database(s) left: {left}")
    if source is not None:
        assert dump_database(source.url) == source.fingerprint, \
            "the source database changed"
    return message


def content(url) -> dict:
    """What a database holds, independent of where rows sit on disk: its
    schema (``pg_dump -s``) and per table the row count and a checksum over
    the sorted rows."""
    tables = sql(url, "SELECT format('%I.%I', schemaname, tablename) FROM "
                      "pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                      "'information_schema') ORDER BY 1")
    found = {"(schema)": dump_database(url, "--schema-only")}
    for (table,) in tables:
        found[table] = sql(url, f"SELECT count(*), md5(coalesce(string_agg("
                                f"md5(t::text), '' ORDER BY md5(t::text)), "
                                f"'')) FROM {table} t")[0]
    return found


def assert_imported(target_url: str, source: Source, admin_url: str) -> None:
    """The target holds exactly what the source holds."""
    assert content(target_url) == content(source.url)
    assert staging_databases(admin_url) == []


def assert_migrated(result, target_url: str, files: list[str]) -> None:
    """A migrate that committed: every data migration in the ledger once,
    the schema at CKAN's head."""
    assert result.returncode == 0, result.stderr
    assert "committed" in result.stdout
    ledger = sql(target_url, "SELECT filename FROM "
                             "datagovuk.applied_migrations ORDER BY 1")
    assert [row[0] for row in ledger] == sorted(files)
    assert sql(target_url, "SELECT to_regclass('public.migrate_version')"
               ) == [(None,)]
    assert len(sql(target_url, "SELECT version_num FROM alembic_version")) \
        == 1


def install_upgrade_hold(admin_url: str, target_url: str) -> None:
    """Make CKAN's schema upgrade pause for HOLD_SECONDS in the middle (when
    revision 099 creates the table api_token), through an event trigger
    that the superuser installs in the target: nothing of the upgrade's own
    code is touched."""
    sql(db.with_database(admin_url, database_name(target_url)), f"""
        CREATE SCHEMA fault_injection;
        CREATE FUNCTION fault_injection.hold_the_upgrade()
            RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                       WHERE object_identity = 'public.api_token') THEN
                PERFORM pg_sleep({HOLD_SECONDS});
            END IF;
        END $$;
        CREATE EVENT TRIGGER fault_hold_the_upgrade ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE')
            EXECUTE FUNCTION fault_injection.hold_the_upgrade();
    """)


def remove_upgrade_hold(admin_url: str, target_url: str) -> None:
    sql(db.with_database(admin_url, database_name(target_url)),
        "DROP EVENT TRIGGER fault_hold_the_upgrade; "
        "DROP SCHEMA fault_injection CASCADE")


def start_migrate_held_in_the_upgrade(admin_url: str, site: str
                                      ) -> tuple[subprocess.Popen, str]:
    """``ckan ... datagovuk migrate`` on ``site``, started with the hold in
    place and waited for until it sleeps at revision 099; and the dump of
    ``site`` from before it started."""
    install_upgrade_hold(admin_url, site)
    before = dump_database(site)
    process = start("ckan", MIGRATE, site)
    wait_until(lambda: sleeping_in(admin_url, database_name(site)), process,
               "the schema upgrade reached revision 099")
    return process, before


def assert_migrate_succeeds_once_released(admin_url: str, site: str) -> None:
    """The re-run after the fault, without the hold: a complete migration."""
    remove_upgrade_hold(admin_url, site)
    result = ckan_datagovuk(MIGRATE, db_url=site)
    assert_migrated(result, site, ["001_bytemark_to_govuk.sql"])


# --------------------------------------------------------------------------
# transfer: the dump streamed over ssh into a staging database

# The routes from [user@]host: the stream restored as it arrives (the
# default, compressed by zstd on the way since both hosts have it), the same
# stream compressed by pg_dump instead, and the directory route.
ROUTES = pytest.mark.parametrize(
    "route", [[], ["--compress", "1"], ["--remote-format", "directory"]],
    ids=["stream", "stream-zlib", "directory"])


@ROUTES
@fault(step="transfer", fault="ssh connection dropped mid-transfer",
       outcome="target unchanged, source unchanged, staging dropped, one-line "
               "error naming ssh; re-run succeeds")
def test_ssh_connection_dropped_mid_transfer(route, ssh_server, source, target,
                                             pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = dump_database(target)
    process = start("paster", import_args(ssh_server, source,
                                          "--remote-pg-dump", script, *route),
                    target)
    wait_mid_transfer(process, marker, pg_admin_url)
    assert ssh_server.kill_sessions()
    result = finish(process)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "ssh connection to" in message

    assert_import_succeeds(ssh_server, source, target, pg_admin_url)


@fault(step="transfer", fault="remote pg_dump fails after partial output",
       outcome="target unchanged, source unchanged, staging dropped, one-line "
               "error with pg_dump's own message; re-run succeeds")
@ROUTES
def test_remote_pg_dump_fails_part_way(route, ssh_server, source, target,
                                       pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "fail")
    before = dump_database(target)
    result = paster_datagovuk(import_args(ssh_server, source,
                                          "--remote-pg-dump", script, *route),
                              db_url=target)
    assert os.path.exists(marker), "the failing pg_dump never sent its burst"
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "failed on" in message and "PQgetResult() failed" in message

    assert_import_succeeds(ssh_server, source, target, pg_admin_url)


@fault(step="transfer", fault="truncated dump file (cut in half)",
       outcome="target unchanged, staging dropped, one-line error saying "
               "truncated or corrupt; re-run with the whole file succeeds")
def test_truncated_dump(old_site_dump, source, target, pg_admin_url, tmp_path):
    truncated = tmp_path / "truncated.dump"
    data = open(old_site_dump, "rb").read()
    truncated.write_bytes(data[:len(data) // 2])
    before = dump_database(target)
    result = paster_datagovuk(["import", str(truncated), "--replace",
                               "--drop-old"], db_url=target)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "truncated or corrupt" in message

    result = paster_datagovuk(["import", old_site_dump, "--replace",
                               "--drop-old"], db_url=target)
    assert result.returncode == 0, result.stderr
    assert_imported(target, source, pg_admin_url)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
@fault(step="transfer", fault="interrupt mid-transfer",
       outcome="target unchanged, source unchanged, staging dropped, one-line "
               "'interrupted' error; re-run succeeds")
def test_interrupt_mid_transfer(signum, ssh_server, source, target,
                                pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = dump_database(target)
    process = start("paster", import_args(ssh_server, source,
                                          "--remote-pg-dump", script), target)
    wait_mid_transfer(process, marker, pg_admin_url)
    process.send_signal(signum)
    result = finish(process)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert f"interrupted ({signal.Signals(signum).name})" in message

    assert_import_succeeds(ssh_server, source, target, pg_admin_url)


# The stream (the default) has pg_restore loading all along; the directory
# route does not use the local server while the dump transfers (its lost
# staging lock is test_transfer's).
@fault(step="transfer", fault="PostgreSQL restarted mid-transfer (down 2 s; "
                              "pg_restore loading the stream)",
       outcome="target unchanged, source unchanged, staging dropped, one-line "
               "error; the server is back; re-run succeeds")
def test_postgres_restart_mid_transfer(ssh_server, source, target, cluster,
                                       pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = dump_database(target)
    process = start("paster", import_args(ssh_server, source,
                                          "--remote-pg-dump", script), target)
    wait_mid_transfer(process, marker, pg_admin_url)
    restart_postgres(cluster)
    result = finish(process)
    assert sql(pg_admin_url, "SELECT 1") == [(1,)], "the server is not back"
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "nothing was imported" in message or "failed" in message

    assert_import_succeeds(ssh_server, source, target, pg_admin_url)


@fault(step="transfer", fault="import killed outright (SIGKILL: kill -9, the "
                              "OOM killer) mid-transfer",
       outcome="target unchanged, source unchanged (no error line: the "
               "process is gone); re-run succeeds and removes the staging "
               "database and the local work directory the killed run left")
def test_import_killed_mid_transfer(ssh_server, source, target, pg_admin_url,
                                    tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    local_tmp = tmp_path / "local-tmp"
    local_tmp.mkdir()
    env = {"TMPDIR": str(local_tmp)}
    before = dump_database(target)
    process = start("paster", import_args(ssh_server, source,
                                          "--remote-pg-dump", script), target,
                    env=env)
    wait_mid_transfer(process, marker, pg_admin_url)
    process.kill()
    assert finish(process).returncode == -signal.SIGKILL
    assert dump_database(target) == before
    assert dump_database(source.url) == source.fingerprint
    (left_dir,) = local_tmp.iterdir()
    assert left_dir.name.startswith(workdir.PREFIX)

    result = paster_datagovuk(import_args(ssh_server, source), db_url=target,
                              env=env)
    assert result.returncode == 0, result.stderr
    assert f"removed {left_dir}, left by an import that was killed" \
        in result.stdout
    assert list(local_tmp.iterdir()) == []
    assert content(target) == content(source.url)
    left = staging_databases(pg_admin_url)
    if left:
        raise StagingLeftBehind(f"staging database(s) left: {left}")


# --------------------------------------------------------------------------
# restore: pg_restore writing into the staging database

@fault(step="restore", fault="disk full while restoring (2 MB tmpfs "
                             "tablespace)",
       outcome="target unchanged, source unchanged, staging dropped, one-line "
               "error saying no space left; re-run with room succeeds")
def test_disk_full_during_restore(tiny_tablespace, ssh_server, source, target,
                                  pg_admin_url):
    before = dump_database(target)
    result = paster_datagovuk(import_args(ssh_server, source), db_url=target)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "No space left on device" in message

    tiny_tablespace()
    assert_import_succeeds(ssh_server, source, target, pg_admin_url)


# --------------------------------------------------------------------------
# data migration: migrations/NNN_*.sql in migrate's one transaction

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
@fault(step="data migration", fault="interrupt while a data "
                                    "migration runs",
       outcome="target unchanged (ledger included), one-line error saying "
               "rolled back; re-run succeeds")
def test_interrupt_during_a_data_migration(signum, old_site, migrations_dir,
                                           pg_admin_url):
    # It writes what `datagovuk verify` (run before the swap) does not
    # compare: a title changed by a site's own migration would be a
    # difference, and stop the move.
    (migrations_dir / "002_slow.sql").write_text(
        "UPDATE package SET metadata_modified = metadata_modified;\n"
        f"SELECT pg_sleep({HOLD_SECONDS});\n")
    args = [*MIGRATE, "--migrations-dir", str(migrations_dir)]
    before = dump_database(old_site)
    process = start("ckan", args, old_site)
    wait_until(lambda: sleeping_in(pg_admin_url, database_name(old_site)),
               process, "the data migration ran")
    process.send_signal(signum)
    result = finish(process)
    message = assert_failed_cleanly(result, old_site, before, pg_admin_url)
    assert "during data migrations" in message and "rolled back" in message

    result = ckan_datagovuk(args, db_url=old_site)
    assert_migrated(result, old_site,
                    ["001_bytemark_to_govuk.sql", "002_slow.sql"])


@fault(step="data migration", fault="a data migration fails on one row "
                                    "(unique constraint)",
       outcome="target unchanged (ledger included), one-line error naming "
               "the file and the constraint; re-run with the file fixed "
               "succeeds")
def test_data_migration_fails_on_one_row(old_site, migrations_dir,
                                         pg_admin_url):
    first, second = [row[0] for row in sql(
        old_site, "SELECT name FROM package WHERE state = 'active' "
                  "ORDER BY name LIMIT 2")]
    # Every dataset's title changes, and one dataset's name collides.
    (migrations_dir / "002_rename.sql").write_text(
        "UPDATE package SET title = upper(title), name = CASE name "
        f"WHEN '{second}' THEN '{first}' ELSE name END;\n")
    args = [*MIGRATE, "--migrations-dir", str(migrations_dir)]
    before = dump_database(old_site)
    result = ckan_datagovuk(args, db_url=old_site)
    message = assert_failed_cleanly(result, old_site, before, pg_admin_url)
    assert "002_rename.sql" in message and "package_name_key" in message
    assert "rolled back" in message

    (migrations_dir / "002_rename.sql").write_text(
        "UPDATE package SET title = upper(title);\n")
    # The titles change on purpose: verify would stop it.
    result = ckan_datagovuk(args + ["--no-verify"], db_url=old_site)
    assert_migrated(result, old_site,
                    ["001_bytemark_to_govuk.sql", "002_rename.sql"])
    assert sql(old_site, "SELECT title FROM package WHERE name = %s",
               (second,))[0][0].isupper()


@fault(step="archive", fault="disk full while migrate writes (2 MB tmpfs "
                             "tablespace for new tables)",
       outcome="target unchanged (ledger included), one-line error saying "
               "no space left and rolled back; re-run with room succeeds")
def test_disk_full_during_migrate(tiny_tablespace, old_site, pg_admin_url):
    before = dump_database(old_site)
    result = ckan_datagovuk(MIGRATE, db_url=old_site)
    message = assert_failed_cleanly(result, old_site, before, pg_admin_url)
    assert "No space left on device" in message and "rolled back" in message
    # the first new tables are the archive's copy, taken before the data
    # migrations ("archive history")
    assert "during archive" in message or "archive failed" in message or \
        "archive history failed" in message

    tiny_tablespace()
    result = ckan_datagovuk(MIGRATE, db_url=old_site)
    assert_migrated(result, old_site, ["001_bytemark_to_govuk.sql"])


# --------------------------------------------------------------------------
# schema upgrade: CKAN's alembic revisions, same transaction

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
@fault(step="schema upgrade", fault="interrupt in the middle of "
                                    "CKAN's upgrade (revision 099)",
       outcome="target unchanged (data migrations and archive rolled back "
               "too), one-line error; re-run succeeds")
def test_interrupt_during_the_schema_upgrade(signum, old_site, pg_admin_url):
    process, before = start_migrate_held_in_the_upgrade(pg_admin_url,
                                                        old_site)
    process.send_signal(signum)
    result = finish(process)
    message = assert_failed_cleanly(result, old_site, before, pg_admin_url)
    assert "during schema upgrade" in message and "rolled back" in message

    assert_migrate_succeeds_once_released(pg_admin_url, old_site)


@fault(step="schema upgrade", fault="PostgreSQL restarted in the middle of "
                                    "CKAN's upgrade (down 2 s)",
       outcome="target unchanged (the server aborted the transaction), "
               "one-line error; the server is back; re-run succeeds")
def test_postgres_restart_during_the_schema_upgrade(old_site, cluster,
                                                    pg_admin_url):
    process, before = start_migrate_held_in_the_upgrade(pg_admin_url,
                                                        old_site)
    restart_postgres(cluster)
    result = finish(process)
    assert sql(pg_admin_url, "SELECT 1") == [(1,)], "the server is not back"
    message = assert_failed_cleanly(result, old_site, before, pg_admin_url)
    assert "schema upgrade" in message

    assert_migrate_succeeds_once_released(pg_admin_url, old_site)


@fault(step="schema upgrade", fault="migrate killed outright (SIGKILL) in "
                                    "the middle of CKAN's upgrade",
       outcome="target unchanged once PostgreSQL has aborted the dead "
               "client's transaction (no error line: the process is gone); "
               "re-run succeeds")
def test_migrate_killed_during_the_schema_upgrade(old_site, pg_admin_url):
    process, before = start_migrate_held_in_the_upgrade(pg_admin_url,
                                                        old_site)
    name = database_name(old_site)
    process.kill()
    assert finish(process).returncode == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while sql(pg_admin_url, "SELECT 1 FROM pg_stat_activity WHERE "
                            "datname = %s", (name,)):
        assert time.monotonic() < deadline, "the dead client's session stayed"
        time.sleep(0.2)
    assert dump_database(old_site) == before

    assert_migrate_succeeds_once_released(pg_admin_url, old_site)


# --------------------------------------------------------------------------
# verify: in-place migrate checks the move against its manifest

# Nothing documented expects it, so verify finds a difference.
DROP_A_RESOURCE = ("UPDATE resource SET state = 'deleted' WHERE id = (SELECT "
                   "id FROM resource WHERE state = 'active' ORDER BY id "
                   "LIMIT 1);\n")


@fault(step="verify", fault="in-place migrate: a site's data migration "
                            "drops a resource (verify's database checks "
                            "run before the commit)",
       outcome="target unchanged (ledger included), one-line error naming "
               "the first difference and --no-verify, with --dry-run too; "
               "re-run with --no-verify commits and says verify skipped")
def test_in_place_verify_rolls_a_difference_back(old_site, migrations_dir,
                                                 pg_admin_url):
    (migrations_dir / "002_drop_a_resource.sql").write_text(DROP_A_RESOURCE)
    args = [*MIGRATE, "--migrations-dir", str(migrations_dir)]
    before = dump_database(old_site)
    for dry_run in ([], ["--dry-run"]):
        result = ckan_datagovuk(args + dry_run, db_url=old_site)
        message = assert_failed_cleanly(result, old_site, before,
                                        pg_admin_url)
        assert "verify: the migrated database differs from the old site: " \
            "1 difference(s) in resources; first: dataset " in message
        assert "state: expected 'active', found 'deleted'" in message
        assert "run with --no-verify; rolled back" in message

    result = ckan_datagovuk(args + ["--no-verify"], db_url=old_site)
    assert_migrated(result, old_site,
                    ["001_bytemark_to_govuk.sql", "002_drop_a_resource.sql"])
    assert "\nVerify: skipped (--no-verify)\n" in result.stdout
    assert re.search(r"^verify: done in [\d.]+ s +skipped \(--no-verify\)$",
                     result.stdout, re.M), result.stdout


@fault(step="verify", fault="in-place migrate: SIGTERM during the API "
                            "sample, after the commit",
       outcome="the move stays committed (complete), one-line error saying "
               "the API sample did not finish (not a dataset's "
               "difference); `datagovuk verify` then passes")
def test_sigterm_during_the_api_sample_after_the_commit(old_site,
                                                        pg_admin_url):
    process = start("ckan", [*MIGRATE, "--verify-sample", "1000"], old_site)
    for line in process.stdout:
        if line.startswith("API sample ..."):
            break
    else:
        pytest.fail(f"no API sample: {finish(process).stderr}")
    # Hold package_show (CKAN reads package_relationship to serve a
    # dataset, verify's own queries never do) so that the signal strikes
    # inside it, then let it go on.
    lock = db.connect(old_site)
    try:
        with lock.cursor() as cursor:
            cursor.execute("LOCK TABLE package_relationship IN ACCESS "
                           "EXCLUSIVE MODE")
        wait_until(lambda: sql(pg_admin_url, "SELECT 1 FROM pg_stat_activity "
                               "WHERE datname = %s AND wait_event_type = "
                               "'Lock'", (database_name(old_site),)),
                   process, "package_show waited for the lock")
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    finally:
        lock.rollback()
        lock.close()
    result = finish(process)
    message = one_line_error(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert message == ("Error: committed; the API sample did not finish "
                       "(stopped by SIGTERM): `datagovuk verify` asks again")
    assert_migrated(subprocess.CompletedProcess([], 0, "committed", ""),
                    old_site, ["001_bytemark_to_govuk.sql"])
    result = ckan_datagovuk(["verify", "--sample", "20"], db_url=old_site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert staging_databases(pg_admin_url) == []


# --------------------------------------------------------------------------
# concurrency: two operators, one database

@fault(step="concurrency", fault="a second migrate started on the same "
                                 "database at the same time",
       outcome="exactly one applies the migrations and commits, the other "
               "refuses with a one-line error (or, started after the commit, "
               "finds nothing to do); the ledger has one row per file")
def test_two_migrates_at_once(old_site, migrations_dir, pg_admin_url):
    (migrations_dir / "002_slow.sql").write_text(
        f"SELECT pg_sleep({HOLD_SECONDS * 2});\n")
    args = [*MIGRATE, "--migrations-dir", str(migrations_dir)]
    processes = [start("ckan", args, old_site) for _ in range(2)]
    results = [finish(process) for process in processes]
    applied = [result for result in results if result.returncode == 0
               and "002_slow.sql" in result.stdout]
    assert len(applied) == 1, \
        [(result.returncode, result.stdout[-500:], result.stderr)
         for result in results]
    other = results[1 - results.index(applied[0])]
    if other.returncode != 0:
        # The usual case: it started while the first held the lock.
        assert "another `datagovuk migrate` is running" in one_line_error(
            other)
    else:
        # It started only after the first had committed (a very slow
        # start): it found nothing to do, which is right too.
        assert "Data migrations: nothing to apply" in other.stdout
    assert_migrated(applied[0], old_site,
                    ["001_bytemark_to_govuk.sql", "002_slow.sql"])
    assert staging_databases(pg_admin_url) == []

    # Running it again once the other has finished: nothing left to do.
    before = dump_database(old_site)
    result = ckan_datagovuk(args, db_url=old_site)
    assert result.returncode == 0, result.stderr
    assert "Data migrations: nothing to apply" in result.stdout
    assert dump_database(old_site) == before


def import_sessions(admin_url) -> int:
    """Imports holding or waiting for a target's lock (their connections
    carry their application_name)."""
    return sql(admin_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name LIKE %s",
               (transfer.lock.APPLICATION_PREFIX + " %",))[0][0]


@fault(step="concurrency", fault="a second import into the same database "
                                 "while one runs (then one with --wait)",
       outcome="the second refuses at once in one line naming the first's "
               "pid and start time, target unchanged; one given --wait "
               "waits, and once the first has ended (SIGTERM) imports the "
               "whole site")
def test_two_imports_into_one_target(ssh_server, source, target,
                                     pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = dump_database(target)
    first = start("paster", import_args(ssh_server, source,
                                        "--remote-pg-dump", script), target)
    wait_mid_transfer(first, marker, pg_admin_url)

    started = time.monotonic()
    second = paster_datagovuk(import_args(ssh_server, source), db_url=target)
    message = one_line_error(second)
    assert time.monotonic() - started < 30, "the refusal was not at once"
    assert f"another import into the database {database_name(target)} is " \
        f"running (pid {first.pid} on " in message
    assert re.search(r", started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
                     message), message
    assert "checks..." not in second.stdout
    assert dump_database(target) == before

    waiter = start("paster", import_args(ssh_server, source, "--wait"),
                   target)
    wait_until(lambda: import_sessions(pg_admin_url) == 2, waiter,
               "the --wait import was waiting")
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    assert "interrupted (SIGTERM)" in one_line_error(finish(first))
    result = finish(waiter)
    assert result.returncode == 0, result.stderr
    assert f"waiting for the import into {database_name(target)} already " \
        f"running (pid {first.pid} on " in result.stdout
    assert_imported(target, source, pg_admin_url)
    assert import_sessions(pg_admin_url) == 0


# --------------------------------------------------------------------------
# pipeline: the whole move as one command, `migrate --from SOURCE`, which
# imports into a staging database, migrates and promotes there, and only
# then swaps it in

@pytest.fixture(scope="module")
def pipeline_ini(tmp_path_factory):
    """test.ini with ckanext.datagovuk.sysadmins set, so that the promotion
    step runs too."""
    lines = []
    for line in open(TEST_INI).read().splitlines():
        lines.append(line)
        if line.strip() == "[app:main]":
            lines.append(f"{settings.SYSADMINS} = {CONFIGURED_SYSADMIN}")
    path = tmp_path_factory.mktemp("pipeline") / "ckan.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def migrate_from_args(server, source: Source, *extra: str) -> list[str]:
    return ["migrate", "--from", *import_args(server, source)[1:],
            "--resolve-email-clash", "keep-oldest", *extra]


def start_migrate_from(ini: str, args: list[str], target_url: str
                       ) -> subprocess.Popen:
    env = {**os.environ, "CKAN_SQLALCHEMY_URL": target_url}
    return subprocess.Popen(
        [os.path.join(VENV_BIN, "paster"), "datagovuk", *args, "-c", ini],
        cwd="/", env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)


def run_migrate_from(ini: str, args: list[str], target_url: str):
    return finish(start_migrate_from(ini, args, target_url), timeout=600)


def sleeping_in_staging(admin_url) -> bool:
    marker = transfer.staging_name("x", 12345)[1:-len("12345")]
    return bool(sql(admin_url, "SELECT 1 FROM pg_stat_activity WHERE "
                               "datname LIKE %s AND wait_event = 'PgSleep'",
                    ("%" + marker.replace("_", "\\_") + "%",)))


def assert_moved(result, target_url: str, source: Source, admin_url: str,
                 files: list[str]) -> None:
    """``migrate --from`` completed: the target is the migrated old site
    with the configured sysadmin promoted, nothing left over."""
    assert result.returncode == 0, result.stderr
    assert sql(target_url, "SELECT to_regclass('public.marker')") == [(None,)]
    assert_migrated(subprocess.CompletedProcess([], 0, "committed", ""),
                    target_url, files)
    assert sql(target_url, "SELECT user_name, via FROM datagovuk.promotions"
               ) == [(CONFIGURED_SYSADMIN, "configured")]
    assert staging_databases(admin_url) == []
    assert dump_database(source.url) == source.fingerprint


@fault(step="pipeline", fault="migrate --from: ssh connection dropped "
                              "mid-transfer",
       outcome="site database unchanged, source unchanged, staging dropped, "
               "one-line error; re-run moves the whole site (migrated, "
               "sysadmin promoted)")
def test_migrate_from_with_the_ssh_connection_dropped(
        pipeline_ini, ssh_server, source, target, pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = dump_database(target)
    process = start_migrate_from(pipeline_ini, migrate_from_args(
        ssh_server, source, "--remote-pg-dump", script), target)
    wait_mid_transfer(process, marker, pg_admin_url)
    assert ssh_server.kill_sessions()
    result = finish(process)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "ssh connection to" in message

    result = run_migrate_from(pipeline_ini,
                              migrate_from_args(ssh_server, source), target)
    assert_moved(result, target, source, pg_admin_url,
                 ["001_bytemark_to_govuk.sql"])


@fault(step="pipeline", fault="migrate --from: SIGTERM while a data "
                              "migration runs in the staging database",
       outcome="site database unchanged, source unchanged, staging dropped, "
               "one-line error; re-run moves the whole site")
def test_migrate_from_interrupted_in_a_data_migration(
        pipeline_ini, ssh_server, source, target, migrations_dir,
        pg_admin_url):
    # It writes what `datagovuk verify` (run before the swap) does not
    # compare: a title changed by a site's own migration would be a
    # difference, and stop the move.
    (migrations_dir / "002_slow.sql").write_text(
        "UPDATE package SET metadata_modified = metadata_modified;\n"
        f"SELECT pg_sleep({HOLD_SECONDS});\n")
    args = migrate_from_args(ssh_server, source, "--migrations-dir",
                             str(migrations_dir))
    before = dump_database(target)
    process = start_migrate_from(pipeline_ini, args, target)
    wait_until(lambda: sleeping_in_staging(pg_admin_url), process,
               "the data migration ran in the staging database")
    process.send_signal(signal.SIGTERM)
    result = finish(process)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "SIGTERM" in message

    result = run_migrate_from(pipeline_ini, args, target)
    assert_moved(result, target, source, pg_admin_url,
                 ["001_bytemark_to_govuk.sql", "002_slow.sql"])


@fault(step="pipeline", fault="migrate --from: PostgreSQL restarted while a "
                              "data migration runs (down 2 s)",
       outcome="site database unchanged, source unchanged, staging dropped, "
               "one-line error; the server is back; re-run moves the whole "
               "site")
def test_migrate_from_with_a_postgres_restart(
        pipeline_ini, ssh_server, source, target, migrations_dir, cluster,
        pg_admin_url):
    (migrations_dir / "002_slow.sql").write_text(
        f"SELECT pg_sleep({HOLD_SECONDS});\n")
    args = migrate_from_args(ssh_server, source, "--migrations-dir",
                             str(migrations_dir))
    before = dump_database(target)
    process = start_migrate_from(pipeline_ini, args, target)
    wait_until(lambda: sleeping_in_staging(pg_admin_url), process,
               "the data migration ran in the staging database")
    restart_postgres(cluster)
    result = finish(process)
    assert sql(pg_admin_url, "SELECT 1") == [(1,)], "the server is not back"
    assert_failed_cleanly(result, target, before, pg_admin_url, source)

    result = run_migrate_from(pipeline_ini, args, target)
    assert_moved(result, target, source, pg_admin_url,
                 ["001_bytemark_to_govuk.sql", "002_slow.sql"])


@fault(step="pipeline", fault="migrate --from: the migrated staging "
                              "database differs from the old site (a "
                              "site's data migration drops a resource)",
       outcome="verify fails before the swap: site database unchanged, "
               "source unchanged, staging dropped (with --keep-failed kept "
               "under a printed name), one-line error naming the first "
               "difference; re-run with --no-verify moves the site, saying "
               "verify skipped")
def test_migrate_from_stops_when_verify_finds_a_difference(
        pipeline_ini, ssh_server, source, target, migrations_dir,
        pg_admin_url):
    (migrations_dir / "002_drop_a_resource.sql").write_text(DROP_A_RESOURCE)
    before = dump_database(target)
    result = run_migrate_from(pipeline_ini, migrate_from_args(
        ssh_server, source, "--migrations-dir", str(migrations_dir)), target)
    message = assert_failed_cleanly(result, target, before, pg_admin_url,
                                    source)
    assert "verify found the staging database differs" in message
    assert "resources" in message and "no swap" in message
    assert "state: expected 'active', found 'deleted'" in message

    # --keep-failed: the same failure, the staging database kept for
    # inspection under a name no later import takes for a killed one's.
    result = run_migrate_from(pipeline_ini, migrate_from_args(
        ssh_server, source, "--migrations-dir", str(migrations_dir),
        "--keep-failed"), target)
    assert_failed_cleanly(result, target, before, pg_admin_url, source)
    kept = re.search(r"kept for inspection as (\S+) ", result.stdout).group(1)
    assert kept.startswith(db.parse(target).database + "__failed_import_")
    # It is the migrated staging database that failed verify.
    assert sql(db.with_database(target, kept), "SELECT filename FROM "
               "datagovuk.applied_migrations ORDER BY 1") == [
        ("001_bytemark_to_govuk.sql",), ("002_drop_a_resource.sql",)]
    sql(pg_admin_url, f'DROP DATABASE "{kept}"')

    # --no-verify: the site's migration meant it.
    result = run_migrate_from(pipeline_ini, migrate_from_args(
        ssh_server, source, "--migrations-dir", str(migrations_dir),
        "--no-verify"), target)
    assert_moved(result, target, source, pg_admin_url,
                 ["001_bytemark_to_govuk.sql", "002_drop_a_resource.sql"])
    assert re.search(r"^verify the move: done in [\d.]+ s +skipped "
                     r"\(--no-verify\)$", result.stdout, re.M), result.stdout


# --------------------------------------------------------------------------
# input: refused before anything runs

@pytest.mark.parametrize("program,args", [
    ("ckan", ["migrate", "--no-such-option"]),
    ("paster", ["import", "somewhere.dump", "--no-such-option"]),
], ids=["ckan migrate", "paster import"])
@fault(step="input", fault="unknown option",
       outcome="one-line usage error, exit 2, target unchanged")
def test_unknown_option(program, args, target, pg_admin_url):
    before = dump_database(target)
    if program == "ckan":
        result = ckan_datagovuk(args, db_url=target)
    else:
        result = paster_datagovuk(args, db_url=target)
    assert result.returncode == 2
    message = assert_failed_cleanly(result, target, before, pg_admin_url)
    assert "--no-such-option" in message


@pytest.mark.parametrize("command", [["migrate"], ["import", "x.dump"],
                                     ["promote", "--demoted"]],
                         ids=["migrate", "import", "promote"])
@fault(step="input", fault="missing config file",
       outcome="one-line error naming the file, exit 2")
def test_missing_config(command):
    result = run_command(["paster", "datagovuk", *command, "-c",
                          "/nonexistent/ckan.ini"], cwd="/")
    assert result.returncode == 2
    assert "/nonexistent/ckan.ini does not exist" in one_line_error(result)
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command,expected", [
    (MIGRATE, "is not a CKAN database"),
    (["promote", "--demoted"], "holds no CKAN site"),
], ids=["migrate", "promote"])
@fault(step="input", fault="config pointing at a database that is not "
                           "CKAN's",
       outcome="one-line refusal, that database unchanged")
def test_config_pointing_at_a_non_ckan_database(command, expected,
                                                make_database, pg_admin_url):
    other = make_database()
    sql(other, "CREATE TABLE invoices (id int PRIMARY KEY, total numeric); "
               "INSERT INTO invoices VALUES (1, 99.5)")
    before = dump_database(other)
    result = paster_datagovuk(command, db_url=other)
    message = assert_failed_cleanly(result, other, before, pg_admin_url)
    assert expected in message


@pytest.mark.parametrize("option", ["--remote-db", "--remote-pg-dump",
                                    "source"])
@fault(step="input", fault="shell metacharacters in an argument "
                           "that reaches the remote host",
       outcome="nothing runs on the remote host (no file created), one-line "
               "error, target unchanged")
def test_shell_metacharacters_reach_no_shell(option, ssh_server, source,
                                             target, pg_admin_url, tmp_path):
    pwned = tmp_path / "pwned"
    payload = f"ckan; touch {pwned}; echo $(touch {pwned})"
    args = import_args(ssh_server, source)
    if option == "source":
        args[1] = f"{ssh_server.destination};touch {pwned}"
    elif option == "--remote-db":
        args[args.index("--remote-db") + 1] = payload
    else:
        args += ["--remote-pg-dump", payload]
    before = dump_database(target)
    result = paster_datagovuk(args, db_url=target)
    assert not pwned.exists(), "a shell ran the operator's input"
    assert_failed_cleanly(result, target, before, pg_admin_url, source)
