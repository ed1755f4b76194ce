"""Our commands, run as an operator runs them (``paster datagovuk ... -c
INI`` in a subprocess with a generated ini): ``import``, ``migrate
--skip-upgrade``, ``migrate``, ``promote --demoted``, ``migrate --from``
and a bare start-up of CKAN."""
from __future__ import annotations

import os
import sys

from ckanext.datagovuk import transfer

from .steps import Step, parse_report, say

VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
INI_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "bench.ini.in")


class OurCommands:
    """Part of ``Bench``: needs ``self.run``, ``self.args``, ``self.output``,
    ``self.cluster`` and the ``RemoteHost`` methods."""

    def datagovuk_command(self, args: list[str], ini: str) -> list[str]:
        if self.args.cli == "ckan":
            return [os.path.join(VENV_BIN, "ckan"), "-c", ini, "datagovuk", *args]
        return [os.path.join(VENV_BIN, "paster"), "datagovuk", *args, "-c", ini]

    def write_ini(self, database: str) -> str:
        path = os.path.join(self.output, f"bench-{database}.ini")
        with open(INI_TEMPLATE) as handle:
            template = handle.read()
        with open(path, "w") as handle:
            handle.write(template.format(url=self.cluster.url(database)))
        return path

    def command_env(self) -> dict:
        """The environment of our commands: the ini names the database, so
        the harness's CKAN_SQLALCHEMY_URL must not override it; Solr is the
        run's own."""
        env = {"CKAN_SQLALCHEMY_URL": "", "CKAN_INI": ""}
        if getattr(self, "solr", None) is not None:
            env["CKAN_SOLR_URL"] = self.solr.core_url()
        return env

    def command_options(self, command: str) -> set[str]:
        try:
            from ckanext.datagovuk.cli import datagovuk
            params = datagovuk.commands[command].params
        except Exception:
            return set()
        return {option for param in params for option in getattr(param, "opts", [])}

    def available_commands(self) -> set[str]:
        try:
            from ckanext.datagovuk.cli import datagovuk
        except Exception:
            return set()
        return set(datagovuk.commands)

    def import_command_args(self, old: str, link: bool) -> list[str]:
        # No password in --remote-db: the remote's pg_dump connects as the
        # cluster's superuser over trust auth, as a local ~/.pgpass would.
        args = ["import", self.alias(link), "--remote-db", self.remote_conninfo(old),
                "--ssh-config", self.ssh_config]
        if self.args.import_jobs:
            args += ["--jobs", str(self.args.import_jobs)]
        if self.args.import_remote_format:
            args += ["--remote-format", self.args.import_remote_format]
        return args

    def import_description(self, link: bool) -> str:
        jobs = self.args.import_jobs or transfer.DEFAULT_JOBS
        route = ("directory format, pg_dump -Fd -j{0}, pg_restore -j{0} "
                 "once all has arrived" if self.args.import_remote_format
                 == "directory" else "custom format, zstd -1 on the way "
                 "when both hosts have zstd, restored as it arrives, "
                 "indexes and keys with pg_restore -j{0}").format(jobs)
        return (f"datagovuk import (ssh, {route})"
                + (", 100 Mbit/s link" if link else ", loopback"))

    def measure_import(self, old: str, target: str, name: str,
                       link: bool = False) -> Step:
        description = self.import_description(link)
        if "import" not in self.available_commands():
            return self.not_measured(name, description,
                                     "the `datagovuk import` command does not exist yet")
        self.cluster.drop(target)
        ini = self.write_ini(target)
        args = self.import_command_args(old, link)
        failed_attempts = []
        while True:
            step = self.run(name, description, self.datagovuk_command(args, ini),
                            env=self.command_env())
            step.details.update(parse_report(os.path.join(self.output, step.log)))
            self.drop_staging(target)
            # An autovacuum worker on the freshly loaded staging database
            # counts as "another session" for import's swap check (a race
            # reported to its owner): retry once, and say so.
            if (step.ok or failed_attempts
                    or "other session(s) are connected" not in (step.reason or "")):
                break
            failed_attempts.append({"seconds": round(step.seconds, 3),
                                    "reason": step.reason})
            os.replace(os.path.join(self.output, step.log),
                       os.path.join(self.output, f"logs/{name}.attempt1.log"))
        if failed_attempts:
            step.details["failed_attempts"] = failed_attempts
            self.save()
        return step

    def drop_staging(self, target: str) -> None:
        """Drop staging databases a failed import could not drop itself."""
        for (name,) in self.cluster.admin_sql(
                "SELECT datname FROM pg_database WHERE datname LIKE "
                f"'{target}\\_\\_import\\_%'"):
            say(f"dropping the staging database {name} left by a failed import")
            self.cluster.drop(name)

    def measure_migrate(self, target: str, suffix: str) -> None:
        commands = self.available_commands()
        ini = self.write_ini(target)
        imported = self.cluster.exists(target)
        plan = [
            ("migrate", f"migrate_data{suffix}",
             "datagovuk migrate --skip-upgrade (the data migration)",
             ["migrate", "-v", "--skip-upgrade"]),
            ("migrate", f"migrate_upgrade{suffix}",
             "datagovuk migrate (the schema upgrade, after the data migration)",
             ["migrate", "-v"]),
            ("promote", f"promote{suffix}", "datagovuk promote --demoted",
             ["promote", "--demoted"]),
        ]
        if "--resolve-email-clash" in self.command_options("migrate"):
            # The generated site has two active users whose emails differ
            # only in case (as the real one had); the operator must choose.
            for entry in plan:
                if entry[0] == "migrate":
                    entry[3].extend(["--resolve-email-clash", "keep-oldest"])
        blocked = None
        for command, name, description, args in plan:
            if command not in commands:
                reason = f"the `datagovuk {command}` command does not exist yet"
            elif not imported:
                reason = "no imported database to work on"
            elif blocked:
                reason = f"{blocked} did not succeed"
            else:
                reason = None
            if reason:
                self.not_measured(name, description, reason)
                blocked = blocked or name
                continue
            step = self.run(name, description, self.datagovuk_command(args, ini),
                            env=self.command_env())
            step.details.update(parse_report(
                os.path.join(self.output, step.log)))
            if not step.ok:
                blocked = name

    def measure_verify(self, target: str, suffix: str) -> None:
        """``datagovuk verify`` (its default sample of CKAN's API) and
        ``verify --all`` on the migrated database of the scale."""
        plan = [(f"verify{suffix}", "datagovuk verify (the manifest's checks "
                 "and CKAN's API for its default sample)", ["verify"]),
                (f"verify_all{suffix}", "datagovuk verify --all (the "
                 "manifest's checks and CKAN's API for every dataset)",
                 ["verify", "--all"])]
        upgraded = self.steps.get(f"migrate_upgrade{suffix}")
        for name, description, args in plan:
            if "verify" not in self.available_commands():
                self.not_measured(name, description,
                                  "the `datagovuk verify` command does not exist yet")
            elif not target or not self.cluster.exists(target):
                self.not_measured(name, description, "no migrated database")
            elif upgraded is None or not upgraded.ok:
                self.not_measured(name, description,
                                  f"migrate_upgrade{suffix} did not succeed")
            else:
                self.measure_verify_round(name, description, args, target)
        # The default verify is short: like the steps of the ratios, it
        # counts the median of --rounds runs (not --all: minutes each).
        if self.steps.get(f"verify{suffix}") and \
                self.steps[f"verify{suffix}"].ok:
            for round_number in range(2, self.args.rounds + 1):
                self.add_round(f"verify{suffix}", self.measure_verify_round(
                    f"verify{suffix}.round{round_number}", plan[0][1],
                    plan[0][2], target))

    def measure_verify_round(self, name: str, description: str,
                             args: list[str], target: str) -> Step:
        step = self.run(name, description, self.datagovuk_command(
            args, self.write_ini(target)), env=self.command_env())
        step.details.update(parse_report(os.path.join(self.output, step.log)))
        return step

    def measure_one_run(self, old: str, datasets: int) -> Step:
        """``migrate --from SOURCE``: import, migrate and promote (the
        configured sysadmins) in one process, swapped in at the end."""
        name = "pipeline_one_run"
        description = ("datagovuk migrate --from (import + migrate + promote "
                       "+ verify + reindex in one run)")
        if "--from" not in self.command_options("migrate"):
            return self.not_measured(name, description,
                                     "`datagovuk migrate --from` does not exist yet")
        target = f"bench_onerun_{datasets}"
        self.cluster.drop(target)
        ini = self.write_ini(target)
        args = ["migrate", "-v", "--from", self.alias(False),
                "--remote-db", self.remote_conninfo(old),
                "--ssh-config", self.ssh_config]
        if "--resolve-email-clash" in self.command_options("migrate"):
            args += ["--resolve-email-clash", "keep-oldest"]
        step = self.run(name, description, self.datagovuk_command(args, ini),
                        env=self.command_env())
        step.details.update(parse_report(os.path.join(self.output, step.log)))
        self.drop_staging(target)
        self.cluster.drop(target)
        return step

    def measure_startup(self, database: str) -> None:
        """What a bare ``ckan`` command costs (CKAN loads its app), to read
        the per-command figures against."""
        ini = self.write_ini(database)
        self.run("ckan_startup", "ckan -c INI datagovuk --help (CKAN start-up only)",
                 [os.path.join(VENV_BIN, "ckan"), "-c", ini, "datagovuk", "--help"],
                 env=self.command_env())
