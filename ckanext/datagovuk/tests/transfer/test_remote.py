"""What the remote host is found to have."""
from __future__ import annotations

from ckanext.datagovuk.transfer import remote


def test_versions():
    assert remote.parse_version(
        "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)") == (15,)
    assert remote.parse_version("pg_dump (PostgreSQL) 9.6.24") == (9, 6)
    assert remote.parse_version("pg_dump (PostgreSQL) 99.1") == (99,)
    assert remote.parse_version("bash: pg_dump: not found") is None
    assert (9, 6) < (15,) < (99,)
