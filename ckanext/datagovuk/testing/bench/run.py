"""One benchmark run: the timed, sampled subprocess every step is, and the
stages of each scale (``steps.STAGES``) in order, results saved as they
come."""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ckanext.datagovuk import db

from .cluster import Cluster
from .commands import OurCommands
from .floor import Floor
from .link import LINK_BYTES_PER_SECOND, ThrottledProxy
from .machine import busy_cpu_seconds, loadavg, machine
from .manual import ManualRoute
from .memory import MemorySampler
from .ratios import ratios
from .remote import RemoteHost
from .report import write_results
from .search import SearchIndexSteps
from .steps import Stage, Step, last_line, say, selected, stages


@dataclass
class Scale:
    """What the stages of one scale share."""
    datasets: int
    main: bool
    old: str                    # the generated old site's database
    floor_variant: str = ""     # chosen by the floor's selection pass
    migrated: str = ""          # imported and migrated, for the search steps

    @property
    def suffix(self) -> str:
        return "" if self.main else f"_{self.datasets}"


class Bench(RemoteHost, Floor, ManualRoute, OurCommands, SearchIndexSteps):
    def __init__(self, args: argparse.Namespace, admin_url: str, ckan_url: str):
        self.args = args
        self.cluster = Cluster(admin_url, ckan_url)
        self.output = os.path.abspath(args.output)
        self.logs = os.path.join(self.output, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="datagovuk-bench-")
        self.remote_dir = os.path.join(self.work, "remote")     # the old host's disk
        self.local_dir = os.path.join(self.work, "local")       # the new host's disk
        os.makedirs(self.remote_dir)
        os.makedirs(self.local_dir)
        os.chmod(self.work, 0o755)
        self.steps: dict[str, Step] = {}
        self.sizes: dict[str, dict] = {}
        self.floor_variants: list[str] = []
        self.ssh = None
        self.solr = None
        self.ssh_config = os.path.join(self.work, "ssh_config")
        self.proxy: ThrottledProxy | None = None
        self.started = time.monotonic()
        self.complete = False
        self.interrupted: str | None = None
        self._machine: dict | None = None

    def run(self, name: str, description: str, command: list[str] | str,
            env: dict | None = None, cwd: str | None = None,
            display: str | None = None) -> Step:
        """Run ``command`` (argv, or a bash script with pipefail), timed, with
        its memory sampled; output to logs/NAME.log."""
        step = Step(name, description)
        step.command = display or (command if isinstance(command, str)
                                   else shlex.join(command))
        step.log = os.path.join("logs", f"{name}.log")
        argv = (["bash", "-o", "pipefail", "-c", command]
                if isinstance(command, str) else command)
        full_env = dict(os.environ)
        full_env.update(env or {})
        # Let autovacuum and the checkpointer finish before the clock
        # starts, so that one step does not pay for the work of the one
        # before.
        step.details["autovacuum_wait_seconds"] = round(
            self.cluster.wait_for_autovacuum(), 1)
        self.cluster.admin_sql("CHECKPOINT")
        say(f"{name}: {description}")
        with open(os.path.join(self.output, step.log), "w") as log:
            log.write(f"$ {step.command}\n")
            log.flush()
            started = time.monotonic()
            cpu_before = busy_cpu_seconds()
            try:
                # Its own process group, so that an interrupted run can stop
                # a whole pipeline.
                process = subprocess.Popen(argv, env=full_env, cwd=cwd or self.work,
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT,
                                           start_new_session=True)
            except OSError as error:
                step.status, step.reason = "failed", str(error)
                return self._record(step)
            roots = {"local": process.pid}
            if self.ssh is not None and self.ssh.process is not None:
                roots["remote"] = self.ssh.process.pid
            sampler = MemorySampler(
                roots, exclude={self.ssh.process.pid} if self.ssh and self.ssh.process
                else set()).start()
            try:
                returncode = process.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                sampler.stop()
                step.reason = (f"interrupted after {time.monotonic() - started:.0f} s")
                self._record(step)
                raise
            step.seconds = time.monotonic() - started
            cpu_after = busy_cpu_seconds()
            if cpu_before is not None and cpu_after is not None:
                step.cpu_seconds = cpu_after - cpu_before
            step.memory = sampler.stop()
        if returncode == 0:
            step.status = "ok"
        else:
            step.status = "failed"
            step.reason = (f"exit status {returncode}: "
                           f"{last_line(os.path.join(self.output, step.log))}")
        say(f"{name}: {step.status} in {step.seconds:.1f} s"
             + (f" ({step.reason})" if step.reason else ""))
        return self._record(step)

    def _record(self, step: Step) -> Step:
        self.steps[step.name] = step
        self.save()
        return step

    def not_measured(self, name: str, description: str, reason: str) -> Step:
        say(f"{name}: not measured: {reason}")
        return self._record(Step(name, description, reason=reason))

    def generate(self, datasets: int) -> str | None:
        database = f"bench_old_{datasets}"
        self.cluster.drop(database)
        owner = db.parse(self.cluster.ckan_url).username
        self.cluster.admin_sql(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        step = self.run(
            f"generate_{datasets}", f"generate the old site, {datasets} datasets",
            [sys.executable, "-m", "ckanext.datagovuk.testing.oldsite",
             "--datasets", str(datasets), "--seed", str(self.args.seed),
             db.parse(self.cluster.url(database)).set(password=None).render_as_string()],
            # libpq reads the password from the environment, never argv.
            env=db.libpq_env(self.cluster.url(database)))
        if not step.ok:
            self.cluster.drop(database)
            return None
        # Set hint bits and the visibility map now (the generator already
        # ran ANALYZE), so the first copy does not pay for them.
        self.cluster.admin_sql("VACUUM", database)
        self.sizes[str(datasets)] = self.cluster.measure_size(database)
        return database

    def measure_more_rounds(self, old: str, floor_variant: str,
                            datasets: int) -> None:
        """Rounds 2 to --rounds of the loopback steps in a ratio (the floor,
        import, the manual route), back to back.  On a shared machine one
        copy alone can be well off either way (docs/benchmark.rst); each of
        these steps then counts the median of its rounds."""
        def measured(name: str) -> bool:
            # A step left out (--stages) or failed gets no more rounds.
            return name in self.steps and self.steps[name].ok

        for round_number in range(2, self.args.rounds + 1):
            suffix = f".round{round_number}"
            if measured("floor"):
                self.add_round("floor", self.measure_floor_round(
                    old, floor_variant, suffix))
            if measured("import.loopback"):
                target = f"bench_import_{datasets}_round{round_number}"
                self.add_round("import.loopback", self.measure_import(
                    old, target, "import.loopback" + suffix))
                self.cluster.drop(target)
            if measured("manual.loopback"):
                self.add_round("manual.loopback",
                               self.measure_manual(old, suffix=suffix))

    def add_round(self, name: str, again: Step) -> None:
        """Fold ``again``, one more round of step ``name``, into it: its
        seconds (and CPU seconds) become the median of its rounds, all of
        which are kept in its details."""
        for part in [again.name, *again.details.get("parts", [])]:
            self.steps.pop(part, None)
        step = self.steps.get(name)
        if step is None or not step.ok:
            return
        rounds = step.details.setdefault("rounds", [round(step.seconds, 3)])
        cpu_rounds = step.details.setdefault(
            "cpu_rounds", [None if step.cpu_seconds is None
                           else round(step.cpu_seconds, 2)])
        if again.ok:
            rounds.append(round(again.seconds, 3))
            step.seconds = statistics.median(rounds)
            cpu_rounds.append(None if again.cpu_seconds is None
                              else round(again.cpu_seconds, 2))
            if None not in cpu_rounds:
                step.cpu_seconds = statistics.median(cpu_rounds)
        else:
            step.details.setdefault("failed_rounds", []).append(
                f"{again.name}: {again.reason}")
        self.save()

    def scale(self, datasets: int, full: bool) -> None:
        suffix = "" if full else f"_{datasets}"
        chosen = [stage for stage in stages(full)
                  if selected(stage, self.args.stages)]
        for stage in stages(full):
            if stage not in chosen:
                self.not_measured_stage(stage, suffix, "--stages")
        if not any(stage.steps for stage in chosen):
            return
        old = self.generate(datasets)
        if old is None:
            for stage in chosen:
                self.not_measured_stage(
                    stage, suffix,
                    f"the old site of {datasets} datasets could not be generated")
            return
        scale = Scale(datasets, full, old)
        try:
            for stage in chosen:
                getattr(self, stage.method)(scale)
        finally:
            if scale.migrated:
                self.cluster.drop(scale.migrated)
        if not self.args.keep_old:
            self.cluster.drop(old)

    def not_measured_stage(self, stage: Stage, suffix: str, reason: str) -> None:
        for name in stage.steps:
            self.not_measured(name + suffix, name + suffix, reason)

    # ---- the stages (steps.STAGES) --------------------------------------

    def stage_startup(self, scale: Scale) -> None:
        self.measure_startup(scale.old)

    def stage_floor(self, scale: Scale) -> None:
        scale.floor_variant = self.select_floor(scale.old,
                                                self.floor_plan(scale.old))
        self.measure_floor_round(scale.old, scale.floor_variant)

    def stage_import_and_migrate(self, scale: Scale) -> None:
        target = f"bench_import_{scale.datasets}"
        self.measure_import(scale.old, target, f"import.loopback{scale.suffix}")
        self.measure_migrate(target, scale.suffix)
        scale.migrated = target

    def stage_verify(self, scale: Scale) -> None:
        self.measure_verify(scale.migrated, scale.suffix)

    def stage_search_index(self, scale: Scale) -> None:
        self.measure_search(scale.migrated, scale.suffix)

    def stage_manual(self, scale: Scale) -> None:
        self.measure_manual(scale.old)

    def stage_more_rounds(self, scale: Scale) -> None:
        self.measure_more_rounds(scale.old, scale.floor_variant, scale.datasets)

    def stage_link(self, scale: Scale) -> None:
        if self.args.skip_slow_link:
            for name in ("floor_ssh.link", "manual.link", "import.link"):
                self.not_measured(name, name, "--skip-slow-link")
            return
        self.proxy = ThrottledProxy(self.ssh.port).start()
        self.write_ssh_config()
        try:
            # The routes in a ratio first, for a run stopped early.
            self.measure_import(scale.old, f"bench_import_link_{scale.datasets}",
                                "import.link", link=True)
            self.cluster.drop(f"bench_import_link_{scale.datasets}")
            self.measure_manual(scale.old, link=True)
            self.measure_floor_link(scale.old)
        finally:
            self.proxy.stop()
            self.proxy = None

    def stage_one_run(self, scale: Scale) -> None:
        self.measure_one_run(scale.old, scale.datasets)

    def main(self) -> dict:
        from ckanext.datagovuk.testing import localssh

        from ckanext.datagovuk.testing import localsolr

        self.ssh = localssh.start(parent=self.work)
        self.write_ssh_config()
        # The run's own Solr: reindex and migrate --from swap its live core.
        self.solr = localsolr.start(parent=self.work)
        try:
            if self.args.compare_datasets:
                self.scale(self.args.compare_datasets, full=False)
            self.scale(self.args.datasets, full=True)
            self.complete = True
        except KeyboardInterrupt as interrupt:
            self.interrupted = str(interrupt) or "SIGINT"
            say(f"interrupted ({self.interrupted}): writing what was measured")
        finally:
            self.ssh.stop()
            self.solr.stop()
            shutil.rmtree(self.work, ignore_errors=True)
        return self.results()

    # ---- results --------------------------------------------------------

    def machine(self) -> dict:
        if self._machine is None:
            self._machine = machine(self.cluster.admin_url)
        return {**self._machine, "loadavg_at_end": loadavg()}

    def results(self) -> dict:
        results = {
            "machine": self.machine(),
            "parameters": {"datasets": self.args.datasets,
                           "compare_datasets": self.args.compare_datasets,
                           "seed": self.args.seed,
                           "skip_slow_link": self.args.skip_slow_link,
                           "cli": self.args.cli,
                           "stages": list(self.args.stages),
                           "link_bytes_per_second": LINK_BYTES_PER_SECOND},
            "sizes": self.sizes,
            "steps": {name: step.as_dict() for name, step in self.steps.items()},
            "ratios": ratios(self.steps, self.args.datasets, self.args.compare_datasets),
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "complete": self.complete,
        }
        if self.interrupted:
            results["interrupted"] = self.interrupted
        return results

    def save(self) -> None:
        """Write the results so far: a long run stopped early still leaves
        every figure it measured."""
        write_results(self.results(), self.output)
