"""``python -m ckanext.datagovuk.testing.oldsite``: a site and its dump,
and a one-line error."""
from __future__ import annotations

import subprocess
import sys

from ckanext.datagovuk.tests.testing.oldsite.conftest import scalar, table_names


def test_command_line_builds_a_site_and_a_dump(make_database, tmp_path):
    url = make_database()
    dump = tmp_path / "site.dump"
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.oldsite", "--datasets", "20",
         "--seed", "3", "--no-harvest", "--dump", str(dump), url],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "20 datasets" in result.stdout
    assert "pass" not in result.stdout + result.stderr  # password masked
    assert "datasets" in result.stderr and "rows" in result.stderr
    assert scalar(url, "SELECT count(*) FROM package") == 20
    assert "harvest_source" not in table_names(url)
    listing = subprocess.run(["pg_restore", "-l", str(dump)],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public package " in listing
    assert "TABLE DATA public migrate_version " in listing


def test_command_line_error_is_one_line(make_database):
    url = make_database()
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.oldsite", "--datasets", "3",
         url], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert table_names(url) == set()
