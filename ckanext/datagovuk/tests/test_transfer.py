"""``datagovuk import``: a real sshd on loopback (``localssh``) plays the old
site's host, the private PostgreSQL plays both servers (the remote pg_dump
reaches it through a libpq connection string, with trust authentication).
Nothing is mocked.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from ckanext.datagovuk import db, transfer
from ckanext.datagovuk.testing import localpg
from ckanext.datagovuk.transfer import remote
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.tests.conftest import (TEST_INI, VENV_BIN,
                                              admin_execute, ckan_datagovuk,
                                              create_database,
                                              drop_database, one_line_error,
                                              paster_datagovuk, remote_pg_dump,
                                              run_sql)


# --------------------------------------------------------------------------
# Fixtures and helpers

@pytest.fixture(scope="module")
def source(pg_admin_url, ckan_db_url, old_site_template):
    """A copy of the generated old site that the "remote" pg_dump reads:
    (URL, libpq connection string for --remote-db, fingerprint)."""
    name = f"transfer_source_{uuid.uuid4().hex[:8]}"
    url = db.parse(create_database(pg_admin_url, ckan_db_url, name,
                                   old_site_template))
    connection_string = (f"host=127.0.0.1 port={url.port} dbname={name} "
                         f"user={url.username}")
    yield url, connection_string, fingerprint(url)
    drop_database(pg_admin_url, name)


@pytest.fixture
def missing_url(ckan_db_url, pg_admin_url):
    """URL of a database that does not exist (dropped after the test if an
    import created it)."""
    name = f"t_new_{uuid.uuid4().hex[:10]}"
    yield db.with_database(ckan_db_url, name).render_as_string(
        hide_password=False)
    drop_database(pg_admin_url, name)
    for leftover in leftovers(pg_admin_url, name):
        drop_database(pg_admin_url, leftover)


@pytest.fixture
def existing_target(make_database):
    """A target that already holds data (one marker row)."""
    url = make_database()
    run_sql(url, "CREATE TABLE marker (note text); "
                 "INSERT INTO marker VALUES ('the site before the import')")
    return url


def fingerprint(url) -> dict:
    """Per public table: row count and an md5 over its rows (sorted); plus
    the names of the indexes and constraints."""
    conn = db.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables "
                        "WHERE schemaname = 'public' ORDER BY 1")
            tables = [row[0] for row in cur.fetchall()]
            result = {}
            for table in tables:
                cur.execute(
                    f'SELECT count(*), md5(coalesce(string_agg(md5(t::text), '
                    f"'' ORDER BY md5(t::text)), '')) FROM public.\"{table}\" t")
                result[table] = cur.fetchone()
            cur.execute("SELECT indexname FROM pg_indexes "
                        "WHERE schemaname = 'public' ORDER BY 1")
            result["(indexes)"] = tuple(row[0] for row in cur.fetchall())
            cur.execute("SELECT conname FROM pg_constraint c JOIN "
                        "pg_namespace n ON n.oid = c.connamespace "
                        "WHERE n.nspname = 'public' ORDER BY 1")
            result["(constraints)"] = tuple(row[0] for row in cur.fetchall())
            return result
    finally:
        conn.close()


def leftovers(admin_url, target: str) -> list[str]:
    """Staging or backup databases an import of ``target`` left behind."""
    rows = run_sql(admin_url, "SELECT datname FROM pg_database WHERE "
                              f"datname LIKE '{target}\\_\\_%' ORDER BY 1")
    return [row[0] for row in rows]


def database_name(url) -> str:
    return db.parse(url).database


def ssh_args(server) -> list[str]:
    return ["--ssh-port", str(server.port), "--identity", server.identity_file,
            "--ssh-option", f"UserKnownHostsFile={server.known_hosts_file}"]


def remote_db_args(source) -> list[str]:
    return ["--remote-db", source[1]]


def import_options(server, source) -> transfer.ImportOptions:
    """What ``ssh_args`` and ``remote_db_args`` give, for an import run in
    this process."""
    return transfer.ImportOptions(remote_db=source[1], ssh=transfer.SshSettings(
        port=server.port, identity_file=server.identity_file,
        options=[f"UserKnownHostsFile={server.known_hosts_file}"]))


def assert_imported(url, source):
    assert fingerprint(url) == source[2]
    owners = run_sql(url, "SELECT DISTINCT tableowner FROM pg_tables "
                          "WHERE schemaname = 'public'")
    assert owners == [(db.parse(url).username,)]


def assert_failed_cleanly(result, target_url, before, admin_url) -> str:
    message = one_line_error(result)
    assert fingerprint(target_url) == before
    assert leftovers(admin_url, database_name(target_url)) == []
    assert ":pass@" not in result.stdout + result.stderr
    return message


def import_in_process(args, db_url) -> subprocess.CompletedProcess:
    """The ``import`` command as ``paster`` runs it (the click group with
    the configured target URL), in this process: the same code path as a
    subprocess without its few seconds of start-up."""
    from click.testing import CliRunner

    from ckanext.datagovuk.cli import datagovuk
    from ckanext.datagovuk.cli_import import ConfiguredDatabase

    result = CliRunner().invoke(datagovuk, ["import", *args],
                                obj=ConfiguredDatabase(db_url))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code,
                                       result.stdout, result.stderr)


def start_paster_import(args, db_url) -> subprocess.Popen:
    env = {**os.environ, "CKAN_SQLALCHEMY_URL": db_url}
    return subprocess.Popen(
        [os.path.join(VENV_BIN, "paster"), "datagovuk", "import", *args,
         "-c", TEST_INI], cwd="/", env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path, process, timeout=90):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the dump never started"
        time.sleep(0.1)


def finish(process) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode,
                                       stdout, stderr)


# --------------------------------------------------------------------------
# Imports that work

def test_streamed_import_with_ckan_into_an_empty_database_equals_the_source(
        ssh_server, source, make_database, tmp_path, pg_admin_url):
    target = make_database()
    kept = tmp_path / "kept.dump"
    result = ckan_datagovuk(["import", ssh_server.destination,
                             *remote_db_args(source), *ssh_args(ssh_server),
                             "--jobs", "1", "--keep-dump", str(kept)],
                            db_url=target)
    assert result.returncode == 0, result.stderr
    assert_imported(target, source)
    assert f"into database {database_name(target)}" in result.stdout
    assert "transfer+restore" in result.stdout
    assert "rows: package " in result.stdout
    assert ":pass@" not in result.stdout + result.stderr
    # The kept copy is the whole dump.
    assert kept.read_bytes()[:5] == b"PGDMP"
    listing = subprocess.run(["pg_restore", "-l", str(kept)],
                             capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE DATA public package" in \
        listing.stdout
    assert leftovers(pg_admin_url, database_name(target)) == []


def test_restored_as_it_arrives_by_default_with_parallel_indexes(
        ssh_server, source, make_database, tmp_path, pg_admin_url):
    target = make_database()
    result = paster_datagovuk(["import", "-v", ssh_server.destination,
                               *remote_db_args(source), *ssh_args(ssh_server)],
                              db_url=target)
    assert result.returncode == 0, result.stderr
    assert_imported(target, source)
    # Both hosts (this one) have zstd.
    assert ("(custom format, compressed by zstd -1 on the way, restored as "
            "it arrives; indexes and keys then built with pg_restore -j 2)"
            ) in result.stdout
    assert "received (decompressed): " in result.stdout
    assert "transfer+restore: done" in result.stdout
    assert "indexes and keys: done" in result.stdout
    assert leftovers(pg_admin_url, database_name(target)) == []

    # --keep-dump keeps what arrives: pg_dump compresses then.
    kept_target = make_database()
    kept = tmp_path / "kept.dump"
    result = paster_datagovuk(["import", "-v", ssh_server.destination,
                               *remote_db_args(source), *ssh_args(ssh_server),
                               "--keep-dump", str(kept)],
                              db_url=kept_target)
    assert result.returncode == 0, result.stderr
    assert_imported(kept_target, source)
    assert ("(custom format, compressed by pg_dump -Z1, restored as it "
            "arrives;") in result.stdout
    # The kept copy is the whole stream, data included, though the indexes
    # were built from its head only.
    again = make_database()
    result = paster_datagovuk(["import", str(kept)], db_url=again)
    assert result.returncode == 0, result.stderr
    assert_imported(again, source)


@pytest.mark.parametrize("missing", ["remote", "local"])
def test_without_zstd_on_either_host_pg_dump_compresses(
        missing, ssh_server, source, make_database, monkeypatch, pg_admin_url):
    if missing == "remote":
        # The remote host looks for this name; here zstd is still found.
        monkeypatch.setattr(remote, "ZSTD", "zstd-not-installed")
        monkeypatch.setattr(remote, "local_zstd",
                            lambda: shutil.which("zstd"))
        reason = "the remote host has no zstd"
    else:
        monkeypatch.setattr(remote, "local_zstd", lambda: None)
        reason = "zstd is not installed here"
    target = make_database()
    said = []
    transfer.import_database(ssh_server.destination, target, import_options(
        ssh_server, source), echo=said.append)
    assert_imported(target, source)
    assert any(f"(custom format, compressed by pg_dump -Z1; {reason}, "
               "restored as it arrives" in line for line in said), said
    assert leftovers(pg_admin_url, database_name(target)) == []


def test_an_unreadable_zstd_stream_loses_nothing(
        ssh_server, source, existing_target, tmp_path, monkeypatch,
        pg_admin_url):
    # A zstd that sends garbage instead of compressing; -d is the real one.
    fake = tmp_path / "zstd"
    fake.write_text('#!/bin/sh\n'
                    'case " $* " in *" -d "*) exec zstd "$@";; esac\n'
                    'cat > /dev/null; printf "not a zstd frame"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(remote, "ZSTD", str(fake))
    before = fingerprint(existing_target)
    options = import_options(ssh_server, source)
    options.replace = True
    with pytest.raises(OperatorError) as failure:
        transfer.import_database(ssh_server.destination, existing_target,
                                 options)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith(f"the compressed dump from "
                              f"{ssh_server.destination} cannot be read: ")
    assert "unsupported format" in message
    assert fingerprint(existing_target) == before
    assert leftovers(pg_admin_url, database_name(existing_target)) == []


def test_directory_import_leaves_nothing_on_the_remote_host(
        ssh_server, source, make_database, tmp_path, pg_admin_url):
    target = make_database()
    remote_tmp = tmp_path / "remote-tmp"
    remote_tmp.mkdir()
    kept = tmp_path / "kept"
    result = paster_datagovuk(["import", "-v", ssh_server.destination,
                               *remote_db_args(source), *ssh_args(ssh_server),
                               "--remote-format", "directory",
                               "--remote-tmpdir", str(remote_tmp),
                               "--keep-dump", str(kept)], db_url=target)
    assert result.returncode == 0, result.stderr
    assert_imported(target, source)
    assert "(directory format, pg_dump -j 2 there" in result.stdout
    assert "remote dump+transfer: done" in result.stdout
    assert "restore: done" in result.stdout
    assert list(remote_tmp.iterdir()) == []
    assert leftovers(pg_admin_url, database_name(target)) == []
    # The kept directory is a dump of its own: it imports again.
    assert (kept / "toc.dat").is_file()
    again = make_database()
    result = paster_datagovuk(["import", "-v", str(kept)], db_url=again)
    assert result.returncode == 0, result.stderr
    assert "(directory format" in result.stdout
    assert_imported(again, source)


def test_each_table_arrives_while_the_remote_pg_dump_still_runs(
        ssh_server, source, existing_target, tmp_path, pg_admin_url):
    """The stand-in pg_dump has written every table but has not exited (it
    holds, as a real one does while it dumps the biggest table): the
    tables are already here, toc.dat is not.  Cutting the connection then
    stops it and removes its directory on the remote host at once."""
    script, marker = remote_pg_dump(tmp_path, "trickle")
    remote_tmp = tmp_path / "remote-tmp"
    remote_tmp.mkdir()
    kept = tmp_path / "kept"
    # The same database dumps to the same file names (dump ids).
    reference = tmp_path / "reference"
    subprocess.run(["pg_dump", "-Fd", "-j", "2", "-Z1", "-O", "-x", "-f",
                    str(reference)], env=db.libpq_env(source[0]), check=True)
    before = fingerprint(existing_target)
    process = start_paster_import(
        [ssh_server.destination, *remote_db_args(source),
         *ssh_args(ssh_server), "--remote-pg-dump", script,
         "--remote-format", "directory",
         "--remote-tmpdir", str(remote_tmp), "--keep-dump", str(kept),
         "--replace"], existing_target)
    try:
        wait_for(marker, process)
        data_files = set(os.listdir(reference)) - {"toc.dat"}
        deadline = time.monotonic() + 30
        while set(os.listdir(kept)) != data_files:
            assert time.monotonic() < deadline, sorted(os.listdir(kept))
            time.sleep(0.1)
        assert not (kept / "toc.dat").exists()
        assert len(list(remote_tmp.iterdir())) == 1
        assert ssh_server.kill_sessions()
        result = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_failed_cleanly(result, existing_target, before, pg_admin_url)
    assert not kept.exists()

    def remote_pg_dump_running() -> bool:
        return f"{script} -Fd" in subprocess.run(
            ["ps", "-eo", "args"], capture_output=True, text=True).stdout

    deadline = time.monotonic() + 10
    while list(remote_tmp.iterdir()) or remote_pg_dump_running():
        assert time.monotonic() < deadline, list(remote_tmp.iterdir())
        time.sleep(0.1)


def test_a_remote_pg_dump_older_than_9_3_sends_a_custom_dump_instead(
        ssh_server, source, make_database, tmp_path):
    # Stands in for an old server's pg_dump: reports 9.2 (no -j there) and
    # then dumps with the real one, as the old server's would.
    old_pg_dump = tmp_path / "pg_dump_92"
    old_pg_dump.write_text('#!/bin/sh\n'
                           'if [ "$1" = --version ]; then\n'
                           '  echo "pg_dump (PostgreSQL) 9.2.24"; exit 0\n'
                           'fi\n'
                           'exec pg_dump "$@"\n')
    old_pg_dump.chmod(0o755)
    target = make_database()
    result = paster_datagovuk(["import", "-v", ssh_server.destination,
                               *remote_db_args(source), *ssh_args(ssh_server),
                               "--remote-pg-dump", str(old_pg_dump),
                               "--remote-format", "directory"],
                              db_url=target)
    assert result.returncode == 0, result.stderr
    assert "cannot dump in parallel" in result.stdout
    assert ("(custom format, compressed by zstd -1 on the way, restored as it "
            "arrives") in result.stdout
    assert "indexes and keys: done" in result.stdout
    assert_imported(target, source)


def test_directory_route_refuses_an_existing_keep_dump_path(
        ssh_server, source, make_database, tmp_path):
    existing = tmp_path / "dump.d"
    existing.mkdir()
    result = paster_datagovuk(["import", ssh_server.destination,
                               *remote_db_args(source), *ssh_args(ssh_server),
                               "--remote-format", "directory",
                               "--keep-dump", str(existing)],
                              db_url=make_database())
    assert "already exists" in one_line_error(result)


def test_remote_dump_file_with_paster_into_a_missing_database(
        ssh_server, source, old_site_dump, missing_url, pg_admin_url):
    result = paster_datagovuk(["import", "-v",
                               f"{ssh_server.destination}:{old_site_dump}",
                               *ssh_args(ssh_server), "--jobs", "2"],
                              db_url=missing_url)
    assert result.returncode == 0, result.stderr
    assert "(custom format, restored as it arrives" in result.stdout
    assert_imported(missing_url, source)
    assert leftovers(pg_admin_url, database_name(missing_url)) == []


def test_local_custom_dump_replaces_and_keeps_the_old_database(
        old_site_dump, source, existing_target, pg_admin_url):
    before = fingerprint(existing_target)
    refused = paster_datagovuk(["import", old_site_dump],
                               db_url=existing_target)
    assert "give --replace" in assert_failed_cleanly(
        refused, existing_target, before, pg_admin_url)

    result = paster_datagovuk(["import", old_site_dump, "--replace",
                               "--jobs", "2"], db_url=existing_target)
    assert result.returncode == 0, result.stderr
    assert_imported(existing_target, source)
    name = database_name(existing_target)
    backups = leftovers(pg_admin_url, name)
    assert len(backups) == 1 and "__before_import_" in backups[0]
    assert f"the previous database is kept as {backups[0]}" in result.stdout
    assert fingerprint(db.with_database(existing_target, backups[0])) == \
        before
    drop_database(pg_admin_url, backups[0])


def test_drop_old_drops_the_replaced_database(old_site_dump, source,
                                              existing_target, pg_admin_url):
    result = transfer.import_database(
        old_site_dump, existing_target,
        transfer.ImportOptions(replace=True, drop_old=True))
    assert result.backup_database is None
    assert result.row_counts["package"] == source[2]["package"][0]
    assert_imported(existing_target, source)
    assert leftovers(pg_admin_url, database_name(existing_target)) == []


def test_plain_dump_with_owners_and_grants_for_absent_roles(
        source, old_site_template, missing_url, pg_admin_url, ckan_db_url,
        tmp_path):
    """A plain dump as the seed made it (``pg_dump ckan > file``: owners
    and grants included) from a server whose roles do not exist here."""
    suffix = uuid.uuid4().hex[:8]
    owner, reader = f"old_owner_{suffix}", f"old_reader_{suffix}"
    name = f"plain_source_{suffix}"
    admin_execute(pg_admin_url, f"CREATE ROLE {owner}; CREATE ROLE {reader}")
    admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" '
                                f'TEMPLATE "{old_site_template}"')
    plain = tmp_path / "plain.sql"
    try:
        admin = db.with_database(pg_admin_url, name)
        run_sql(admin, f"ALTER TABLE public.package OWNER TO {owner}; "
                       f"ALTER TABLE public.resource OWNER TO {owner}; "
                       "GRANT SELECT ON ALL TABLES IN SCHEMA public "
                       f"TO {reader}")
        with open(plain, "wb") as handle:
            subprocess.run(["pg_dump", "-d", name], env=db.libpq_env(admin),
                           stdout=handle, check=True)
    finally:
        drop_database(pg_admin_url, name)
        admin_execute(pg_admin_url, f"DROP ROLE {owner}; DROP ROLE {reader}")
    text = plain.read_text()
    assert f"OWNER TO {owner};" in text and f"TO {reader};" in text

    result = paster_datagovuk(["import", "-v", str(plain)], db_url=missing_url)
    assert result.returncode == 0, result.stderr
    assert "owner/privilege statements" in result.stdout
    assert_imported(missing_url, source)


# --------------------------------------------------------------------------
# Failures: one line, non-zero exit, target unchanged, nothing left behind

def _truncated(path, tmp_path) -> str:
    cut = tmp_path / "truncated.dump"
    data = open(path, "rb").read()
    cut.write_bytes(data[:len(data) // 2])
    return str(cut)


def _not_a_dump(tmp_path) -> str:
    path = tmp_path / "notes.txt"
    path.write_text("the old site's notes, not a database dump\n" * 100)
    return str(path)


def _other_key(tmp_path) -> str:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(key)], check=True)
    return str(key)


def _version_99(tmp_path) -> str:
    script = tmp_path / "pg_dump_99"
    script.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 99.1"\n')
    script.chmod(0o755)
    return str(script)


FAILURES = {
    "truncated local dump": (
        lambda s, src, dump, tmp: [_truncated(dump, tmp)],
        "truncated or corrupt"),
    "truncated remote dump file": (
        lambda s, src, dump, tmp: [f"{s.destination}:{_truncated(dump, tmp)}",
                                   *ssh_args(s)],
        "truncated or corrupt"),
    "not a dump": (
        lambda s, src, dump, tmp: [_not_a_dump(tmp)],
        "not a PostgreSQL dump"),
    "wrong remote database name": (
        lambda s, src, dump, tmp: [s.destination, *ssh_args(s), "--remote-db",
                                   src[1].replace("dbname=", "dbname=nope")],
        "does not exist"),
    "missing remote dump file": (
        lambda s, src, dump, tmp: [f"{s.destination}:/nonexistent/ckan.dump",
                                   *ssh_args(s)],
        "No such file"),
    "unreachable host": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   "--ssh-port", str(localpg.free_port())],
        "Connection refused"),
    "refused key": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   *[_other_key(tmp) if a == s.identity_file
                                     else a for a in ssh_args(s)]],
        "Permission denied"),
    "unknown host key": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   "--ssh-port", str(s.port),
                                   "--identity", s.identity_file,
                                   "--ssh-option",
                                   "UserKnownHostsFile=/dev/null"],
        "Host key verification failed"),
    "newer remote pg_dump": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   *ssh_args(s), "--remote-pg-dump",
                                   _version_99(tmp)],
        "version 99"),
    "disk full": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   *ssh_args(s), "--jobs", "1",
                                   "--keep-dump", "/dev/full"],
        "No space left on device"),
    # Even level 1, pg_dump's own default: a local file has no pg_dump.
    "compression for a local file": (
        lambda s, src, dump, tmp: [dump, "--compress", "1"],
        "--compress sets the remote pg_dump's compression"),
    "remote format for a local file": (
        lambda s, src, dump, tmp: [dump, "--remote-format", "directory"],
        "--remote-format sets how the remote pg_dump dumps"),
    "remote tmpdir missing": (
        lambda s, src, dump, tmp: [s.destination, *remote_db_args(src),
                                   *ssh_args(s), "--remote-format",
                                   "directory", "--remote-tmpdir",
                                   str(tmp / "nowhere")],
        "the remote dump failed on"),
}


# These run through a real `paster` process; the others in-process.
PASTER_FAILURES = {"truncated local dump", "wrong remote database name",
                   "refused key"}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_leaves_the_target_as_it_was(case, ssh_server, source,
                                             old_site_dump, existing_target,
                                             pg_admin_url, tmp_path):
    make_args, expected = FAILURES[case]
    args = make_args(ssh_server, source, old_site_dump, tmp_path)
    before = fingerprint(existing_target)
    if case in PASTER_FAILURES:
        result = paster_datagovuk(["import", *args, "--replace"],
                                  db_url=existing_target)
    else:
        result = import_in_process([*args, "--replace"], existing_target)
    message = assert_failed_cleanly(result, existing_target, before,
                                    pg_admin_url)
    assert expected in message
    assert "secret" not in result.stdout + result.stderr
    assert os.path.exists("/dev/full")


def test_a_dump_of_something_else_is_not_swapped_in(
        make_database, existing_target, pg_admin_url, tmp_path):
    other = make_database()
    run_sql(other, "CREATE TABLE package (id text); CREATE TABLE notes (t text)")
    dump = tmp_path / "other.dump"
    subprocess.run(["pg_dump", "-Fc", "-O", "-x", "-f", str(dump)],
                   env=db.libpq_env(other), check=True)
    before = fingerprint(existing_target)
    result = import_in_process([str(dump), "--replace"], existing_target)
    message = assert_failed_cleanly(result, existing_target, before,
                                    pg_admin_url)
    assert "not a CKAN database" in message and "resource" in message


def test_an_index_that_fails_after_the_streamed_data_loses_nothing(
        ssh_server, make_database, existing_target, pg_admin_url):
    """The data streams in and commits table by table; the index built
    after it fails (its function was replaced, after the index was made
    on the source, by one that raises): the staging database goes, the
    target stays."""
    other = make_database()
    run_sql(other, """
        CREATE FUNCTION body_length(text) RETURNS int LANGUAGE sql
            IMMUTABLE AS 'SELECT length($1)';
        CREATE TABLE notes (body text);
        INSERT INTO notes SELECT 'note ' || n FROM generate_series(1, 1000) n;
        CREATE INDEX notes_body_length ON notes (body_length(body));
        CREATE OR REPLACE FUNCTION body_length(text) RETURNS int
            LANGUAGE plpgsql IMMUTABLE AS
            $$BEGIN RAISE EXCEPTION 'no index on this server'; END$$;
    """)
    url = db.parse(other)
    before = fingerprint(existing_target)
    result = import_in_process(
        [ssh_server.destination, *ssh_args(ssh_server), "--remote-db",
         f"host=127.0.0.1 port={url.port} dbname={url.database} "
         f"user={url.username}", "--replace"], existing_target)
    message = assert_failed_cleanly(result, existing_target, before,
                                    pg_admin_url)
    # The streamed data was restored; the indexes' step, next, failed.
    assert result.stdout.endswith("transfer+restore ...\n"
                                  "indexes and keys ...\n"), result.stdout
    assert message.startswith("Error: pg_restore failed, nothing was "
                              "imported: ")
    assert "no index on this server" in message


def test_a_dump_needing_an_extension_this_server_lacks_is_refused(
        make_database, existing_target, pg_admin_url, tmp_path):
    """A real extension, made available only while the source is built,
    plays PostGIS: the dump needs it and the server no longer has it."""
    name = f"datagovuk_gone_{uuid.uuid4().hex[:6]}"
    sharedir = subprocess.run(
        [os.path.join(os.environ.get("DATAGOVUK_PG_BIN",
                                     "/usr/lib/postgresql/15/bin"),
                      "pg_config"), "--sharedir"],
        capture_output=True, text=True, check=True).stdout.strip()
    files = [os.path.join(sharedir, "extension", f"{name}.control"),
             os.path.join(sharedir, "extension", f"{name}--1.0.sql")]
    source_url = make_database()
    try:
        with open(files[0], "w") as handle:
            handle.write("default_version = '1.0'\nrelocatable = true\n")
        with open(files[1], "w") as handle:
            handle.write(f"CREATE FUNCTION {name}_answer() RETURNS int "
                         "LANGUAGE sql AS 'SELECT 42';\n")
        run_sql(db.with_database(pg_admin_url, database_name(source_url)),
                f"CREATE EXTENSION {name}")
        dump = tmp_path / "needs_extension.dump"
        subprocess.run(["pg_dump", "-Fc", "-O", "-x", "-f", str(dump)],
                       env=db.libpq_env(source_url), check=True)
    finally:
        for path in files:
            if os.path.exists(path):
                os.unlink(path)
    before = fingerprint(existing_target)
    result = import_in_process([str(dump), "--replace"], existing_target)
    message = assert_failed_cleanly(result, existing_target, before,
                                    pg_admin_url)
    assert f"needs the PostgreSQL extension {name}" in message
    assert "install postgresql-15-" in message


def test_a_connected_site_blocks_the_swap(old_site_dump, existing_target,
                                          pg_admin_url):
    site = db.connect(existing_target, application_name="ckan-site")
    try:
        before = fingerprint(existing_target)
        result = import_in_process([old_site_dump, "--replace"],
                                   existing_target)
        message = assert_failed_cleanly(result, existing_target, before,
                                        pg_admin_url)
        assert "1 other session(s)" in message and "ckan-site" in message
    finally:
        site.close()


def _end_the_staging_lock_session(admin_url: str, staging: str) -> int:
    """End the session holding ``staging``'s advisory lock, as a server
    restart would; how many sessions were ended."""
    rows = run_sql(admin_url, """
        SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND (classid::bigint << 32 | objid::bigint) = hashtext(%s)""",
                   (staging,))
    return len(rows)


def test_a_lost_staging_lock_is_taken_again_before_the_swap(
        old_site_dump, source, missing_url, pg_admin_url):
    said, ended = [], []

    def lose_the_lock(staging_url):
        ended.append(_end_the_staging_lock_session(
            pg_admin_url, database_name(staging_url)))

    result = transfer.import_database(
        old_site_dump, missing_url,
        echo=said.append, before_swap=lose_the_lock)
    assert ended == [1]
    assert any("was lost (did the server restart?): it is held again" in line
               for line in said), said
    assert result.row_counts["package"] == source[2]["package"][0]
    assert_imported(missing_url, source)
    assert leftovers(pg_admin_url, database_name(missing_url)) == []


def test_a_staging_lock_another_import_took_stops_the_import(
        old_site_dump, existing_target, pg_admin_url):
    before = fingerprint(existing_target)
    rival = db.connect(pg_admin_url)
    rival.autocommit = True

    def lose_the_lock_to_a_rival(staging_url):
        staging = database_name(staging_url)
        assert _end_the_staging_lock_session(pg_admin_url, staging) == 1
        with rival.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (staging,))

    try:
        with pytest.raises(OperatorError) as refused:
            transfer.import_database(
                old_site_dump, existing_target,
                transfer.ImportOptions(replace=True),
                before_swap=lose_the_lock_to_a_rival)
    finally:
        rival.close()
    message = str(refused.value)
    assert "another import into" in message and "taken it over" in message
    assert "\n" not in message
    assert fingerprint(existing_target) == before
    assert leftovers(pg_admin_url, database_name(existing_target)) == []


@pytest.mark.parametrize("how", ["connection cut", "SIGTERM"])
def test_interrupted_mid_stream(how, ssh_server, source, existing_target,
                                pg_admin_url, tmp_path):
    script, marker = remote_pg_dump(tmp_path, "trickle")
    before = fingerprint(existing_target)
    process = start_paster_import(
        [ssh_server.destination, *remote_db_args(source),
         *ssh_args(ssh_server), "--remote-pg-dump", script, "--jobs", "1",
         "--replace"], existing_target)
    try:
        wait_for(marker, process)
        time.sleep(0.5)
        name = database_name(existing_target)
        assert leftovers(pg_admin_url, name), "no staging database yet"
        if how == "connection cut":
            assert ssh_server.kill_sessions()
        else:
            process.send_signal(signal.SIGTERM)
        result = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    message = assert_failed_cleanly(result, existing_target, before,
                                    pg_admin_url)
    if how == "connection cut":
        # ssh words it by what it saw: a close, or a reset when data was
        # still in flight.
        assert "ssh connection to" in message, message
        assert any(words in message for words in (
            "closed by remote host", "reset by peer", "Broken pipe")), message
    else:
        assert "interrupted (SIGTERM)" in message


def test_refused_before_anything_runs(ssh_server, source, existing_target,
                                      old_site_dump, pg_admin_url):
    before = fingerprint(existing_target)
    cases = {
        "must not hold a password": transfer.ImportOptions(
            remote_db=source[1] + " password=secret", replace=True),
        "host key checking stays on": transfer.ImportOptions(
            remote_db=source[1], replace=True, ssh=transfer.SshSettings(
                port=ssh_server.port, identity_file=ssh_server.identity_file,
                options=["StrictHostKeyChecking=no"])),
        "--drop-old only makes sense with --replace": transfer.ImportOptions(
            drop_old=True),
    }
    for expected, options in cases.items():
        with pytest.raises(OperatorError, match=expected) as error:
            transfer.import_database(ssh_server.destination, existing_target,
                                     options)
        assert "secret" not in str(error.value)
        assert "\n" not in str(error.value)
    local_only = {
        "only an import from \\[user@\\]host runs": transfer.ImportOptions(
            compression=0, replace=True),
        "--remote-tmpdir is where the remote host": transfer.ImportOptions(
            remote_tmpdir="/srv", replace=True),
        "--remote-format sets how the remote pg_dump": transfer.ImportOptions(
            remote_format="directory", replace=True),
    }
    for expected, options in local_only.items():
        with pytest.raises(OperatorError, match=expected):
            transfer.import_database(old_site_dump, existing_target, options)
    assert fingerprint(existing_target) == before
    assert leftovers(pg_admin_url, database_name(existing_target)) == []


def test_out_of_range_jobs_or_compression_is_a_one_line_usage_error(
        old_site_dump, existing_target, pg_admin_url):
    before = fingerprint(existing_target)
    for option, value in (("--jobs", "0"), ("--compress", "10"),
                          ("--remote-format", "tar")):
        result = import_in_process([old_site_dump, option, value, "--replace"],
                                   existing_target)
        assert result.returncode == 2
        assert option in one_line_error(result)
    assert fingerprint(existing_target) == before
    assert leftovers(pg_admin_url, database_name(existing_target)) == []


def test_plan_names_each_program_and_quotes_operator_values(ssh_server,
                                                            existing_target):
    options = transfer.ImportOptions(
        remote_db="dbname=ckan user=co", compression=0,
        remote_pg_dump="/opt/pg $(touch x)/pg_dump", replace=True,
        remote_format="directory",
        ssh=transfer.SshSettings(port=ssh_server.port))
    lines = transfer.plan(ssh_server.destination, existing_target, options)
    fetch = next(line for line in lines if "| tar -x" in line)
    # The operator's values reach the remote script as arguments of
    # sh -s, which reads the script itself from ssh's stdin.
    ssh_line, script = fetch.split(" | tar -x")[0].split("; ", 1)[1] \
        .rsplit(" < ", 1)
    assert shlex.split(script) == [remote.DIRECTORY_DUMP_SCRIPT]
    assert shlex.split(shlex.split(ssh_line)[-1]) == [
        "sh", "-s", "--", "/opt/pg $(touch x)/pg_dump",
        "dbname=ckan user=co", "2", "0", "sync", ""]
    assert any("pg_restore --no-owner" in line and "-j 2" in line
               for line in lines)
    # This host has zstd: the plan shows the zstd pipeline that will run
    # (the fallback only named), and no psql for a custom dump.
    streamed = transfer.plan(ssh_server.destination, existing_target,
                             transfer.ImportOptions(replace=True))
    assert any(remote.ZSTD_DUMP_SCRIPT in line and "| PGHOST=" in line
               and "zstd -d -q -c |" in line
               and "--section=pre-data --section=data" in line
               for line in streamed), streamed
    assert any("-j 2 --section=post-data" in line for line in streamed)
    assert any(line.startswith("(if the remote host has no zstd: pg_dump "
                               "-Z1 there") for line in streamed)
    assert not any("pg_dump -Fc -Z1" in line or "or psql" in line
                   for line in streamed)
    # A level given: pg_dump compresses, no zstd.
    one_job = transfer.plan(ssh_server.destination, existing_target,
                            transfer.ImportOptions(jobs=1, replace=True,
                                                   compression=1))
    assert any("pg_dump -Fc -Z1 -O -x -w -d ckan" in line
               and "| PGHOST=" in line and "--section" not in line
               for line in one_job)
    assert not any("zstd" in line for line in one_job)


def test_without_createdb_the_admin_url_creates_and_renames(
        old_site_dump, source, pg_admin_url, ckan_db_url):
    role = f"ckan_nocreatedb_{uuid.uuid4().hex[:8]}"
    admin_execute(pg_admin_url, f"CREATE ROLE {role} LOGIN NOCREATEDB "
                                "PASSWORD 'rolepass'")
    admin_execute(pg_admin_url, f'CREATE DATABASE "{role}" OWNER {role}')
    url = db.parse(ckan_db_url).set(username=role, password="rolepass",
                                    database=role)
    try:
        with pytest.raises(OperatorError, match="no CREATEDB"):
            transfer.import_database(old_site_dump, url)
        result = transfer.import_database(
            old_site_dump, url, transfer.ImportOptions(admin_url=pg_admin_url))
        assert result.database == role
        assert_imported(url, source)
    finally:
        drop_database(pg_admin_url, role)
        for leftover in leftovers(pg_admin_url, role):
            drop_database(pg_admin_url, leftover)
        admin_execute(pg_admin_url, f"DROP ROLE {role}")
