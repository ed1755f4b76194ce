"""The generated site's dump: it restores, and pg_dump's failure is an
operator error."""
from __future__ import annotations

import subprocess

import pytest

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import OLD_SITE_DATASETS
from ckanext.datagovuk.tests.testing.oldsite.conftest import scalar


def test_old_site_dump_restores(old_site_dump, make_database):
    url = make_database()
    result = subprocess.run(
        ["pg_restore", "--no-owner", "--no-acl", "--single-transaction",
         "-d", db.parse(url).database, old_site_dump],
        env=db.libpq_env(url), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert scalar(url, "SELECT version FROM migrate_version") == 71
    assert scalar(url, "SELECT count(*) FROM package") == OLD_SITE_DATASETS


def test_write_dump_error_is_an_operator_error(make_database, tmp_path):
    url = db.with_database(make_database(), "no_such_database_here")
    with pytest.raises(OperatorError, match="pg_dump"):
        oldsite.write_dump(url, str(tmp_path / "x.dump"))
