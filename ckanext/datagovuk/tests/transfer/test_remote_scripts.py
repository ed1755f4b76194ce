"""The shell scripts an import runs on the remote host
(``transfer/remote_*.sh``): valid ``sh``, clean under shellcheck, and
given the operator's values as arguments, never as shell text.  The
scripts' real work (over a real sshd) is test_transfer's."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from ckanext.datagovuk.transfer import remote

SCRIPTS = sorted(glob.glob(os.path.join(remote.SCRIPTS, "*.sh")))


def test_the_remote_scripts_are_the_ones_the_import_runs():
    assert SCRIPTS == sorted([remote.DIRECTORY_DUMP_SCRIPT,
                              remote.VERSION_SCRIPT, remote.ZSTD_DUMP_SCRIPT])


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_sh_parses_the_script(script):
    result = subprocess.run(["sh", "-n", script], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (make setup "
                           "installs it)")
@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_shellcheck_finds_nothing(script):
    result = subprocess.run(["shellcheck", "--shell=sh", script],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def run_fed_on_stdin(script: str, args: list[str], cwd) -> \
        subprocess.CompletedProcess:
    """``sh -s -- ARGS < script``, as the remote host runs it behind ssh."""
    with open(script, "rb") as handle:
        return subprocess.run(["sh", "-s", "--", *args], stdin=handle,
                              cwd=cwd, capture_output=True, text=True,
                              timeout=60)


def version_args(pg_dump: str, zstd: str, psql: str = "", database: str = "",
                 site_user: str = "", sql: str = "") -> list[str]:
    """The version probe's arguments, as Remote.start_version_check gives
    them (no psql: no source check)."""
    return [pg_dump, remote.REMOTE_ZSTD_MARKER, remote.REMOTE_FACTS_MARKER,
            psql, database, site_user, sql, zstd]


def test_an_operator_value_is_an_argument_not_shell_text(tmp_path):
    hostile = "/no such dir/$(touch injected)/pg_dump"
    result = run_fed_on_stdin(remote.VERSION_SCRIPT,
                              version_args(hostile, "true"), tmp_path)
    assert result.returncode != 0
    assert hostile in result.stderr
    assert not (tmp_path / "injected").exists()


def test_the_version_probe_reports_zstd_only_when_it_runs(tmp_path):
    pg_dump = tmp_path / "pg dump"
    pg_dump.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.2'\n")
    pg_dump.chmod(0o755)
    marker = remote.REMOTE_ZSTD_MARKER
    found = run_fed_on_stdin(remote.VERSION_SCRIPT,
                             version_args(str(pg_dump), "true"), tmp_path)
    missing = run_fed_on_stdin(remote.VERSION_SCRIPT,
                               version_args(str(pg_dump), "no-such-zstd"),
                               tmp_path)
    assert (found.returncode, missing.returncode) == (0, 0)
    assert found.stdout.splitlines() == ["pg_dump (PostgreSQL) 15.2", marker]
    assert missing.stdout.splitlines() == ["pg_dump (PostgreSQL) 15.2"]


def test_the_source_query_goes_to_psql_as_data(tmp_path):
    """The SQL reaches psql on its stdin and the database and site user as
    its arguments, none of them parsed by the shell."""
    pg_dump = tmp_path / "pg_dump"
    pg_dump.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.2'\n")
    psql = tmp_path / "psql"
    psql.write_text('#!/bin/sh\nprintf "%s\\n" "$@"; cat\n')
    for program in (pg_dump, psql):
        program.chmod(0o755)
    hostile = "$(touch injected) `touch injected`; touch injected"
    args = version_args(str(pg_dump), "no-such-zstd", str(psql), hostile,
                        hostile, f"SELECT '{hostile}';")
    result = run_fed_on_stdin(remote.VERSION_SCRIPT, args, tmp_path)
    assert result.returncode == 0, result.stderr
    head, facts = result.stdout.split(remote.REMOTE_FACTS_MARKER + "\n")
    assert head == "pg_dump (PostgreSQL) 15.2\n"
    assert f"site_user={hostile}\n-d\n{hostile}\n-f\n-\n" in facts
    assert facts.endswith(f"SELECT '{hostile}';\n")
    assert not (tmp_path / "injected").exists()


def test_the_zstd_dump_fails_when_pg_dump_does(tmp_path):
    pg_dump = tmp_path / "pg_dump"
    pg_dump.write_text("#!/bin/sh\necho partial; exit 3\n")
    pg_dump.chmod(0o755)
    result = run_fed_on_stdin(remote.ZSTD_DUMP_SCRIPT,
                              [str(pg_dump), "ckan", "cat"], tmp_path)
    assert result.returncode == 3
    assert result.stdout == "partial\n"
