"""Fixtures shared by the whole suite.

`make test` runs pytest inside a private PostgreSQL cluster
(``ckanext.datagovuk.localpg``) and exports its URLs; nothing here touches
a system-wide PostgreSQL.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from ckanext.datagovuk import db

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TEST_INI = os.path.join(ROOT, "test.ini")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `make test`, "
                    "which starts a private PostgreSQL", returncode=2)
    return value


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Superuser URL of the private cluster."""
    return _required_env("DATAGOVUK_PG_ADMIN_URL")


@pytest.fixture(scope="session")
def ckan_db_url() -> str:
    """URL of the database CKAN's test session is configured with."""
    return _required_env("CKAN_SQLALCHEMY_URL")


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


@pytest.fixture
def make_database(pg_admin_url, ckan_db_url):
    """Factory: a new empty database owned by the CKAN role, dropped after
    the test. ``make_database(template=NAME)`` copies a template database.
    Returns the URL the CKAN role connects with."""
    created = []

    def make(template: str | None = None, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        owner = db.parse(ckan_db_url).username
        clause = f' TEMPLATE "{template}"' if template else ""
        admin_execute(pg_admin_url,
                      f'CREATE DATABASE "{name}" OWNER "{owner}"{clause}')
        created.append(name)
        return db.with_database(ckan_db_url, name).render_as_string(
            hide_password=False)

    yield make
    for name in created:
        drop_database(pg_admin_url, name)


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
