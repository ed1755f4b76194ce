"""``datagovuk migrate --from SOURCE``: the whole move as one run.

The import loads the old site into a staging database; the data migrations,
CKAN's schema upgrade and the promotion of the configured sysadmins all run
on that staging database, and only then is it swapped in as the site's
database.  Whatever fails, at whatever step, the staging database is dropped
and the site's database is exactly as it was: never half-migrated.

The search index of the staging database is built last, into a new Solr
core, by a child ``ckan datagovuk reindex --into CORE --no-swap`` (CKAN's
model is bound to the configured database, the child's to the staging one
through ``CKAN_SQLALCHEMY_URL``).  The core is swapped in right before the
database, and swapped back if the database swap fails, so the site never
serves the new database with the old index for more than that moment.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import (db, migrate, reindex, runner, settings,
                               sysadmins, transfer)
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.solr import SolrCores

Echo = Callable[[str], None]


@dataclass
class PipelineReport:
    import_result: Optional[transfer.ImportResult] = None
    migration: Optional[migrate.MigrationReport] = None
    promotion: Optional[sysadmins.PromotionResult] = None
    search_index: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def to_text(self) -> str:
        lines = ["", "== migrate --from: report"]
        if self.import_result:
            lines += ["", "Import:"] + [
                "  " + line for line in self.import_result.summary_lines()]
        if self.migration:
            lines += ["", self.migration.to_text()]
        lines += ["", "Sysadmins:"]
        if self.promotion:
            lines.append("  " + sysadmins.format_result(
                self.promotion).replace("\n", "\n  "))
        else:
            lines.append(f"  none configured ({settings.SYSADMINS}); run "
                         "`datagovuk promote --demoted` or name the users")
        if self.search_index:
            lines += ["", "Search index:"] + [
                "  " + line for line in self.search_index]
        lines += ["", "Time of each step: " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in self.timings)]
        return "\n".join(lines)


@contextlib.contextmanager
def _model_session_on(url: str):
    """CKAN's model session bound to ``url`` (the staging database) while
    the sysadmin ledger runs there, then bound back."""
    from ckan import model
    engine = create_engine(url, poolclass=NullPool)
    model.Session.remove()
    model.Session.configure(bind=engine)
    try:
        yield
    finally:
        model.Session.remove()
        model.Session.configure(bind=model.meta.engine)
        engine.dispose()


def _ckan_program() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ckan")
    return beside if os.path.exists(beside) else "ckan"


@dataclass
class StagingIndex:
    """The staging database's search index: built into ``core`` by a child
    ``ckan`` process, swapped in together with the database."""
    cores: SolrCores
    ini: str
    core: str
    built: bool = False

    @classmethod
    def for_config(cls, config) -> "StagingIndex":
        """Refuses a Solr that does not answer, or whose live core has a
        schema this CKAN does not accept, before anything starts."""
        cores = SolrCores.from_config(config)
        reindex.check_solr(cores)
        return cls(cores, config["__file__"],
                   f"{cores.live}-migrate-{time.strftime('%Y%m%d%H%M%S')}")

    def build(self, staging_url: str, echo: Echo) -> list[str]:
        """Run the child; echo its progress; its report lines."""
        command = [_ckan_program(), "-c", self.ini, "datagovuk", "reindex",
                   "--into", self.core, "--no-swap"]
        child = subprocess.Popen(
            command, env={**os.environ, "CKAN_SQLALCHEMY_URL": staging_url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        report = []
        try:
            for line in child.stdout:
                echo("  " + line.rstrip("\n"))
                if not line.startswith("indexed "):
                    report.append(line.rstrip("\n"))
            errors = child.stderr.read().strip().splitlines()
        except BaseException:
            # The child drops its core itself when it is stopped.
            child.terminate()
            child.wait()
            raise
        if child.wait() != 0:
            reason = errors[-1].removeprefix("Error: ") if errors else \
                f"exit status {child.returncode}"
            raise OperatorError(f"indexing the staging database failed: "
                                f"{reason}")
        self.built = True
        return report

    @contextlib.contextmanager
    def swapped_in(self):
        """The new core swapped with the live one; swapped back if what
        runs meanwhile (the database swap) fails."""
        if not self.built:
            yield
            return
        self.cores.swap(self.cores.live, self.core)
        try:
            yield
        except BaseException:
            self.cores.swap(self.cores.live, self.core)
            raise

    def drop(self) -> None:
        with contextlib.suppress(OperatorError):
            self.cores.unload(self.core)


@contextlib.contextmanager
def _step(report: PipelineReport, name: str, echo: Echo):
    echo(f"\n== {name}")
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    report.timings.append((name, seconds))
    echo(f"== {name}: done in {seconds:.1f} s")


def plan(source: str, target_url: str, import_options: transfer.ImportOptions,
         migration_options: migrate.MigrationOptions, plugins: list[str],
         config) -> list[str]:
    """What ``migrate --from`` would do, step by step; changes nothing."""
    steps = [f"1. import {source} into a staging database next to "
             f"{db.safe_url(target_url)}:"]
    steps += ["     " + line for line in transfer.plan(
        source, target_url, import_options)]
    migrations = ", ".join(
        m.name for m in runner.discover(migration_options.migrations_dir))
    steps.append("2. in the staging database, in one transaction: the "
                 "archive's copy of the history to datagovuk_legacy, "
                 + (f"the data migrations {migrations or '(none)'}"
                    if migration_options.data_migrations else
                    f"no data migrations ({migrations or 'none'} recorded "
                    "as skipped)")
                 + ("" if migration_options.skip_upgrade else
                    ", the tables CKAN does not know moved to datagovuk_legacy, "
                    "CKAN's schema upgrade to head"
                    + (f" and the migrations of {', '.join(plugins)}"
                       if plugins else "")))
    configured = settings.get(settings.SYSADMINS, config)
    steps.append("3. promote " + (", ".join(configured) if configured else
                                  f"nobody ({settings.SYSADMINS} is empty)"))
    steps.append("4. build the staging database's search index into a new "
                 "Solr core (ckan datagovuk reindex --into CORE --no-swap, "
                 "in a child process on the staging database)")
    steps.append(f"5. swap the new core in, then the staging database as "
                 f"{db.parse(target_url).database}"
                 + (" (the old one kept under a backup name)"
                    if import_options.replace and not import_options.drop_old
                    else ""))
    return steps


def migrate_from(source: str, target_url: str,
                 import_options: transfer.ImportOptions,
                 migration_options: migrate.MigrationOptions,
                 plugins: list[str], config, echo: Echo,
                 search_index: bool = True) -> PipelineReport:
    if migration_options.dry_run:
        raise OperatorError("--from cannot be combined with --dry-run: use "
                            "--plan to see what it would do")
    staging_index = StagingIndex.for_config(config) if search_index else None
    report = PipelineReport()
    migration_settings = runner.settings_from_config(config)
    configured = settings.get(settings.SYSADMINS, config)

    def finish_in_staging(staging_url: str) -> None:
        with _step(report, "migrate (in the staging database)", echo):
            report.migration = migrate.migrate(
                staging_url, plugins, migration_settings, migration_options,
                progress=echo)
        if configured and not migration_options.skip_upgrade:
            with _step(report, "promote --configured", echo), \
                    _model_session_on(staging_url):
                report.promotion = sysadmins.promote(configured=True)
        if staging_index:
            with _step(report, f"reindex (the staging database, into core "
                               f"{staging_index.core})", echo):
                report.search_index = staging_index.build(staging_url, echo)

    try:
        with _step(report, f"import {source}", echo):
            report.import_result = transfer.import_database(
                source, target_url, import_options, echo=echo,
                before_swap=finish_in_staging,
                alongside_swap=staging_index.swapped_in if staging_index
                else None)
    except BaseException:
        if staging_index:
            staging_index.drop()
        raise
    if staging_index:
        report.search_index += _previous_index(staging_index,
                                               import_options.drop_old)
    # The import's time includes the steps run before its swap.
    name, total = report.timings.pop()
    nested = sum(seconds for _, seconds in report.timings)
    report.timings.insert(0, (name, total - nested))
    return report


def _previous_index(staging_index: StagingIndex, drop_old: bool) -> list[str]:
    live = staging_index.cores.live
    if drop_old:
        staging_index.drop()
        return [f"swapped in as core {live} with the database; the previous "
                "index was dropped"]
    return [f"swapped in as core {live} with the database; the previous "
            f"index is kept as core {staging_index.core} (drop it with "
            "CoreAdmin UNLOAD)"]
