"""The "remote host": how the run reaches the old site's sshd, straight or
through the 100 Mbit/s link, as an operator's ssh_config would."""
from __future__ import annotations

import os
import shlex

from .cluster import libpq_conninfo


class RemoteHost:
    """Part of ``Bench``: needs ``self.ssh`` (the running ``localssh``
    server), ``self.proxy`` (the link, or None), ``self.ssh_config`` (the
    path to write) and ``self.cluster``."""

    LOOPBACK_ALIAS = "oldsite"
    LINK_ALIAS = "oldsite-100mbit"

    def write_ssh_config(self) -> str:
        """The operator's ssh_config for the remote: one alias straight to
        its sshd, one through the 100 Mbit/s link (the proxy), both with
        strict host key checking against the remote's real host key."""
        server = self.ssh
        hosts = [(self.LOOPBACK_ALIAS, server.port)]
        if self.proxy is not None:
            hosts.append((self.LINK_ALIAS, self.proxy.port))
        lines = []
        for alias, port in hosts:
            lines += [f"Host {alias}",
                      "    HostName 127.0.0.1",
                      f"    Port {port}",
                      f"    User {server.user}",
                      f"    IdentityFile {server.identity_file}",
                      "    IdentitiesOnly yes",
                      f"    UserKnownHostsFile {server.known_hosts_file}",
                      "    GlobalKnownHostsFile /dev/null",
                      f"    HostKeyAlias [127.0.0.1]:{server.port}",
                      "    StrictHostKeyChecking yes",
                      "    BatchMode yes", ""]
        with open(self.ssh_config, "w") as handle:
            handle.write("\n".join(lines))
        return self.ssh_config

    def alias(self, link: bool) -> str:
        return self.LINK_ALIAS if link else self.LOOPBACK_ALIAS

    def ssh_command(self, remote_command: str, link: bool = False) -> str:
        return shlex.join(["ssh", "-F", self.ssh_config, self.alias(link),
                           remote_command])

    def scp_legacy_protocol(self) -> bool:
        """OpenSSH 9's scp speaks SFTP; a server with no sftp subsystem
        needs the old protocol (-O)."""
        try:
            with open(os.path.join(self.ssh.directory, "sshd_config")) as handle:
                return "subsystem" not in handle.read().lower()
        except OSError:
            return False

    def remote_conninfo(self, database: str) -> str:
        return libpq_conninfo(self.cluster.url(database, admin=True))
