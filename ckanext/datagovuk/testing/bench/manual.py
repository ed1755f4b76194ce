"""The seed's manual route: ``ssh host pg_dump ckan > file``, ``scp`` the
file, create the database, ``psql -f`` it."""
from __future__ import annotations

import os
import shlex

from ckanext.datagovuk import db

from .steps import Step, sum_steps


class ManualRoute:
    """Part of ``Bench``: needs ``self.run``, ``self.cluster`` and the
    ``RemoteHost`` methods."""

    def measure_manual(self, old: str, link: bool = False,
                       suffix: str = "") -> Step:
        conninfo = shlex.quote(self.remote_conninfo(old))
        remote_file = os.path.join(self.remote_dir, "ckan_dump.sql")
        local_file = os.path.join(self.local_dir, "ckan_dump.sql")
        where = "link" if link else "loopback"
        target = f"bench_manual_{where}"
        self.cluster.drop(target)
        admin_env = db.libpq_env(self.cluster.url("postgres", admin=True))
        prefix = f"manual.{where}{suffix}"
        scp_options = ["-O"] if self.scp_legacy_protocol() else []
        parts = [
            self.run(f"{prefix}.dump", "ssh host pg_dump ckan > file (plain SQL, "
                     "on the remote)",
                     self.ssh_command(f"pg_dump {conninfo} > {remote_file}", link)),
            self.run(f"{prefix}.scp", "scp host:ckan_dump.sql .",
                     ["scp", "-q", *scp_options, "-F", self.ssh_config,
                      f"{self.alias(link)}:{remote_file}", local_file]),
            self.run(f"{prefix}.createdb", "psql -c 'CREATE DATABASE ckan'",
                     ["psql", "-X", "-q", "-c", f'CREATE DATABASE "{target}"'],
                     env=admin_env),
            self.run(f"{prefix}.load", "psql ckan -f ckan_dump.sql",
                     ["psql", "-X", "-d", target, "-f", local_file],
                     env=admin_env),
        ]
        if os.path.exists(local_file):
            parts[1].details["file_bytes"] = os.path.getsize(local_file)
        for path in (remote_file, local_file):
            if os.path.exists(path):
                os.remove(path)
        self.cluster.drop(target)
        description = ("the seed's manual route: ssh pg_dump > file, scp, "
                       "createdb, psql -f")
        if scp_options:
            parts[1].details["note"] = ("scp -O (the remote sshd has no sftp "
                                        "subsystem)")
        return self._record(sum_steps(prefix, description + f" ({where})", parts))
