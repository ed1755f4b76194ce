"""What the old-site generator's tests share: a copy of the generated site,
an empty old schema, and small queries."""
from __future__ import annotations

import subprocess
import uuid

import pytest

from ckanext.datagovuk import db
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import create_database, drop_database
from ckanext.datagovuk.tests.conftest import run_sql as query


def scalar(url: str, statement: str, params=None):
    rows = query(url, statement, params)
    return rows[0][0] if rows else None


def table_names(url: str) -> set[str]:
    return {row[0] for row in query(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


@pytest.fixture(scope="module")
def site(pg_admin_url, ckan_db_url, old_site_template):
    """One copy of the old site shared by the read-only tests of this
    module."""
    name = f"t_oldsite_{uuid.uuid4().hex[:8]}"
    yield create_database(pg_admin_url, ckan_db_url, name, old_site_template)
    drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def empty_schema_template(pg_admin_url, ckan_db_url):
    """A template holding only the old schema (no rows), so that tests that
    populate sites of their own pay for CKAN's migrations once."""
    name = f"t_oldschema_{uuid.uuid4().hex[:8]}"
    oldsite.build_schema(create_database(pg_admin_url, ckan_db_url, name))
    yield name
    drop_database(pg_admin_url, name)


def strip_dump(text: str) -> str:
    """``pg_dump -s`` output without comments, blank lines and pg_dump
    15.18's per-run random ``\\restrict`` keys."""
    lines = [line for line in text.splitlines()
             if line.strip() and not line.startswith("--")
             and not line.startswith("\\restrict")
             and not line.startswith("\\unrestrict")]
    return "\n".join(lines)


def schema_dump(url: str) -> str:
    result = subprocess.run(["pg_dump", "-s", "-O", "-x"],
                            env=db.libpq_env(url), capture_output=True,
                            text=True, check=True)
    return strip_dump(result.stdout)



def columns(url: str, table: str) -> set[str]:
    return {row[0] for row in query(
        url, "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s", (table,))}
