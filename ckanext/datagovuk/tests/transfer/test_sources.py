"""Sources an operator names, and the ssh command that reaches them."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer import sources


def test_parse_source(tmp_path):
    local = tmp_path / "ckan.dump"
    local.write_bytes(b"PGDMP")
    assert sources.parse_source(str(local)) == sources.Source(
        "local-file", path=str(local))
    assert sources.parse_source("co@co-prod3.dh.bytemark.co.uk") == \
        sources.Source("remote-database", host="co@co-prod3.dh.bytemark.co.uk")
    assert sources.parse_source("co@host:ckan_dump.sql") == sources.Source(
        "remote-file", host="co@host", path="ckan_dump.sql")
    for bad in ("/no/such/file.dump", "-oProxyCommand=sh", "host:",
                "a b", ""):
        with pytest.raises(OperatorError):
            sources.parse_source(bad)


def test_ssh_command_keeps_host_key_checking_and_quotes_nothing_itself():
    settings = sources.SshSettings(port=2222, identity_file=None,
                                    options=["ServerAliveInterval=5"])
    command = settings.command("co@host", "pg_dump -d 'x y'")
    assert command[0] == "ssh" and command[-3:] == ["--", "co@host",
                                                    "pg_dump -d 'x y'"]
    checking = command.index("StrictHostKeyChecking=yes")
    assert checking < command.index("ServerAliveInterval=5")
