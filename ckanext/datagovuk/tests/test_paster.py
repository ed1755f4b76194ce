"""``paster datagovuk``'s own behaviour on a stock config: CKAN's start-up
logging held back unless ``-v``.  A real ``ckan generate config`` ini, no
Solr and no Redis (as an operator's first try), the real paster."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from ckanext.datagovuk import paster
from ckanext.datagovuk.cli import datagovuk
from ckanext.datagovuk.tests.conftest import VENV_BIN, run_command

# A line of CKAN's stock log format: "2026-12-05 07:00:00,123 INFO  [ckan...]".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ +[A-Z]+ +\[",
                      re.MULTILINE)


@pytest.fixture(scope="module")
def stock_ini(tmp_path_factory):
    path = tmp_path_factory.mktemp("stock") / "ckan.ini"
    result = run_command(["ckan", "generate", "config", str(path)])
    assert result.returncode == 0, result.stderr
    return str(path)


def stock_paster(args: list[str], ini: str, db_url: str):
    """paster with the stock ini: only the database comes from the
    environment; no Solr or Redis the harness may have set up."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("CKAN_SOLR_URL", "CKAN_REDIS_URL", "CKAN_INI")}
    env["CKAN_SQLALCHEMY_URL"] = db_url
    return subprocess.run([os.path.join(VENV_BIN, "paster"), "datagovuk",
                           *args, "-c", ini], env=env, cwd="/", text=True,
                          capture_output=True, timeout=300)


def test_a_stock_config_shows_the_command_output_alone(stock_ini,
                                                       ckan_db_url):
    quiet = stock_paster(["status"], stock_ini, ckan_db_url)
    loud = stock_paster(["status", "-v"], stock_ini, ckan_db_url)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr
    # The noise is there to hold back: -v shows CKAN's start-up.
    assert LOG_LINE.search(loud.stdout + loud.stderr), loud.stderr
    output = quiet.stdout + quiet.stderr
    assert not LOG_LINE.search(output), output
    assert "Traceback" not in output
    assert quiet.stderr == ""
    assert quiet.stdout.splitlines()[0].startswith("Database")


def test_verbose_goes_to_a_command_that_takes_it_itself():
    # Every command takes -v (its own detail): it keeps it, and CKAN's
    # start-up logging is shown too.
    assert paster.split_verbose(datagovuk, ["status", "-v"]) == \
        (True, ["status", "-v"])
    assert paster.split_verbose(datagovuk, ["status"]) == (False, ["status"])
