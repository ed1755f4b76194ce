"""The floor: the fastest plain copy of the old database with PostgreSQL's
own tools, chosen in a selection pass over several flag sets, then timed in
rounds as the import is; and the same routes through the 100 Mbit/s link."""
from __future__ import annotations

import os
import shlex

from ckanext.datagovuk import db

from .cluster import libpq_conninfo
from .steps import Step


class Floor:
    """Part of ``Bench``: needs ``self.run``, ``self.steps``,
    ``self.cluster`` and the ``RemoteHost`` methods."""

    def floor_routes(self, old: str, link: bool = False) -> dict[str, tuple]:
        """name -> (description, bash script making database {target});
        over ssh through the 100 Mbit/s link when ``link``."""
        conninfo = shlex.quote(self.remote_conninfo(old))
        remote = os.path.join(self.remote_dir, "floor")
        local = os.path.join(self.local_dir, "floor")
        restore = "pg_restore --no-owner --no-acl --exit-on-error -d {target}"

        def ssh(remote_command):
            return self.ssh_command(remote_command, link)

        direct = shlex.quote(libpq_conninfo(self.cluster.url(old, admin=True)))

        def ssh_directory(compression: int) -> str:
            return (f"rm -rf {local}.d && mkdir -p {local}.d && createdb {{target}} && "
                    + ssh(f"rm -rf {remote}.d && pg_dump -Fd -j2 -Z{compression} "
                          f"-f {remote}.d {conninfo} && tar -C {remote}.d -cf - . ; "
                          f"status=$?; rm -rf {remote}.d; exit $status")
                    + f" | tar -C {local}.d -xf - && {restore} -j2 {local}.d; "
                    f"status=$?; rm -rf {local}.d; exit $status")

        # All are copied once in the selection pass (select_floor); the
        # fastest is then timed in rounds, as the import is.
        return {
            "libpq_fd_j2": (
                "pg_dump -Fd -j2 -Z0 over libpq (no ssh); pg_restore -j2 dir",
                f"rm -rf {local}.d && createdb {{target}} && "
                f"pg_dump -Fd -j2 -Z0 -f {local}.d {direct} && "
                f"{restore} -j2 {local}.d; status=$?; rm -rf {local}.d; exit $status"),
            "ssh_fd_z1_j2": (
                "ssh host 'pg_dump -Fd -j2 -Z1 && tar' | tar -x; pg_restore -j2 dir",
                ssh_directory(1)),
            "ssh_fd_j2": (
                "ssh host 'pg_dump -Fd -j2 -Z0 && tar' | tar -x; pg_restore -j2 dir",
                ssh_directory(0)),
            "ssh_fc_z0_file_j2": (
                "ssh host pg_dump -Fc -Z0 > file; pg_restore -j2 file",
                f"createdb {{target}} && {ssh(f'pg_dump -Fc -Z0 {conninfo}')} "
                f"> {local}.dump && {restore} -j2 {local}.dump; "
                f"status=$?; rm -f {local}.dump; exit $status"),
            "ssh_fc_stream": (
                "ssh host pg_dump -Fc | pg_restore (streamed, default compression)",
                f"createdb {{target}} && {ssh(f'pg_dump -Fc {conninfo}')} | {restore}"),
            "ssh_fc_z0_stream": (
                "ssh host pg_dump -Fc -Z0 | pg_restore (streamed, no compression)",
                f"createdb {{target}} && {ssh(f'pg_dump -Fc -Z0 {conninfo}')} | {restore}"),
            "ssh_fc_z1_stream": (
                "ssh host pg_dump -Fc -Z1 | pg_restore (streamed, fast compression)",
                f"createdb {{target}} && {ssh(f'pg_dump -Fc -Z1 {conninfo}')} | {restore}"),
            "libpq_fc_z0_stream": (
                "pg_dump -Fc -Z0 over libpq (no ssh) | pg_restore",
                f"createdb {{target}} && pg_dump -Fc -Z0 {direct} | {restore}"),
        }

    def copy(self, name: str, description: str, script: str) -> Step:
        target = f"bench_{name.replace('.', '_')}"
        self.cluster.drop(target)
        step = self.run(name, description, script.format(target=target),
                        env=db.libpq_env(self.cluster.url(target)))
        self.cluster.drop(target)
        return step

    def floor_plan(self, old: str) -> list[str]:
        routes = self.floor_routes(old)
        chosen = (self.args.floor_variants.split(",") if self.args.floor_variants
                  else list(routes))
        unknown = [variant for variant in chosen if variant not in routes]
        if unknown:
            raise SystemExit(f"unknown floor variant {unknown[0]!r}: "
                             f"{', '.join(routes)}")
        return chosen

    def select_floor(self, old: str, variants: list[str]) -> str:
        """The selection pass: copy once with each variant; the fastest is
        the floor's method, which ``measure_floor_round`` then times in
        each round, right before the import.  Each copy stays in the
        results."""
        routes = self.floor_routes(old)
        for variant in variants:
            description, script = routes[variant]
            self.copy(f"floor.{variant}", description, script)
            self.floor_variants.append(f"floor.{variant}")
        fastest = self._best("floor_single_copy", "the fastest single copy "
                             "of the selection pass (each variant copied "
                             "once)", self.floor_variants)
        self._best("floor_ssh.loopback", "the fastest plain copy over ssh, "
                   "loopback (selection pass)",
                   [name for name in self.floor_variants
                    if name.startswith("floor.ssh")])
        if not fastest.ok:
            return variants[0]
        return fastest.details["best"].split(".", 1)[1]

    def measure_floor_round(self, old: str, variant: str, suffix: str = ""
                            ) -> Step:
        description, script = self.floor_routes(old)[variant]
        step = self.copy("floor" + suffix, "the floor: the fastest plain "
                         "copy with PostgreSQL's own tools: " + description,
                         script)
        step.details["variant"] = f"floor.{variant}"
        return step

    def _best(self, name: str, description: str, candidates: list[str]) -> Step:
        measured = [self.steps[c] for c in candidates if c in self.steps
                    and self.steps[c].ok]
        if not measured:
            return self.not_measured(
                name, description, "no variant succeeded" if candidates
                else "no variant measured yet")
        best = min(measured, key=lambda step: step.seconds)
        step = Step(name, description, status="ok", seconds=best.seconds,
                    cpu_seconds=best.cpu_seconds,
                    memory=best.memory, command=best.command,
                    details={"best": best.name, "tried": candidates})
        return self._record(step)

    def measure_floor_link(self, old: str) -> None:
        routes = self.floor_routes(old, link=True)
        best_loopback = self.steps.get("floor_ssh.loopback")
        variants = []
        if best_loopback and best_loopback.ok:
            variants.append(best_loopback.details["best"].split(".", 1)[1])
        # Compressed routes too: what helps on loopback may not on a link.
        for variant in ("ssh_fd_z1_j2", "ssh_fc_stream"):
            if variant not in variants:
                variants.append(variant)
        names = []
        for variant in variants:
            description, script = routes[variant]
            name = f"floor_link.{variant}"
            self.copy(name, description + ", 100 Mbit/s link", script)
            names.append(name)
        self._best("floor_ssh.link", "the fastest plain copy over ssh, "
                   "100 Mbit/s link", names)

    # ---- the manual route -----------------------------------------------
