"""``datagovuk migrate --from SOURCE``: the whole move as one run.

The import loads the old site into a staging database; the data migrations,
CKAN's schema upgrade and the promotion of the configured sysadmins all run
on that staging database; ``datagovuk verify`` checks it against the
manifest the migration recorded (in a child ``ckan`` process, whose CKAN
model is bound to the staging database), and only then is it swapped in as
the site's database.  Whatever fails, at whatever step, the staging
database is dropped and the site's database is exactly as it was: never
half-migrated.  The staging database's search index is built last, into a
new Solr core (``staging_index``), and swapped in with the database.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import (db, decisions, migrate, runner, settings,
                               staging_index as search, sysadmins, transfer)
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.verify import run as verify_run

Echo = Callable[[str], None]


@dataclass
class PipelineReport:
    import_result: Optional[transfer.ImportResult] = None
    migration: Optional[migrate.MigrationReport] = None
    promotion: Optional[sysadmins.PromotionResult] = None
    verification: Optional[dict] = None
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
        if self.verification:
            lines += ["", "Verify (the staging database, before the swap): "
                      "every check holds"] + [
                f"  {step['name']}: {step['compared']} {step['what']}: "
                f"{step['result']}" for step in self.verification["steps"]]
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


@contextlib.contextmanager
def _step(report: PipelineReport, name: str, echo: Echo):
    echo(f"\n== {name}")
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    report.timings.append((name, seconds))
    echo(f"== {name}: done in {seconds:.1f} s")


def verify_staging(staging_url: str, config, echo: Echo) -> dict:
    """``datagovuk verify`` on the staging database, in a child ``ckan``
    process; a difference stops the move before the swap."""
    found = verify_run.verify_in_child(staging_url, config["__file__"])
    if not found["ok"]:
        raise OperatorError("verify found the staging database differs from "
                            f"the old site: {verify_run.summary(found)}; no "
                            "swap: this site's database is as it was")
    echo(f"  every check holds (API sample seed {found['seed']})")
    return found


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
                 + ("each dataset's old revisions as activities, "
                    if migration_options.history else
                    "no revisions turned into activities (--no-history), ")
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
    steps.append("4. verify the staging database against the manifest "
                 "(`datagovuk verify`, in a child ckan process); any "
                 "difference stops here")
    steps.append("5. build the staging database's search index into a new "
                 "Solr core (ckan datagovuk reindex --into CORE --no-swap, "
                 "in a child process on the staging database)")
    steps.append(f"6. swap the new core in, then the staging database as "
                 f"{db.parse(target_url).database}"
                 + (" (the old one kept under a backup name)"
                    if import_options.replace and not import_options.drop_old
                    else ""))
    return steps


def plan_decisions(source: str, import_options: transfer.ImportOptions,
                   migration_options: migrate.MigrationOptions, config
                   ) -> list[decisions.Decision] | None:
    """What ``migrate --from`` would stop for, asked of a ``[user@]host``
    source now (read only, over ssh); None when the source is a dump file,
    checked only once its data is loaded."""
    check = decisions.source_check(
        migration_options, runner.settings_from_config(config),
        echo=lambda message: None)
    answer = transfer.probe_source(source, dataclasses.replace(
        import_options, source_check=check))
    return None if answer is None else decisions.decide(answer,
                                                        migration_options)


def migrate_from(source: str, target_url: str,
                 import_options: transfer.ImportOptions,
                 migration_options: migrate.MigrationOptions,
                 plugins: list[str], config, echo: Echo,
                 search_index: bool = True) -> PipelineReport:
    if migration_options.dry_run:
        raise OperatorError("--from cannot be combined with --dry-run: use "
                            "--plan to see what it would do")
    staging_index = (search.StagingIndex.for_config(config) if search_index
                     else None)
    report = PipelineReport()
    migration_settings = runner.settings_from_config(config)
    configured = settings.get(settings.SYSADMINS, config)
    # Whatever would stop the migration is found before the transfer.
    import_options = dataclasses.replace(
        import_options, source_check=decisions.source_check(
            migration_options, migration_settings, echo))

    def finish_in_staging(staging_url: str) -> None:
        with _step(report, "migrate (in the staging database)", echo):
            report.migration = migrate.migrate(
                staging_url, plugins, migration_settings, migration_options,
                progress=echo)
        if configured and not migration_options.skip_upgrade:
            with _step(report, "promote --configured", echo), \
                    _model_session_on(staging_url):
                report.promotion = sysadmins.promote(configured=True)
        if not migration_options.skip_upgrade:
            with _step(report, "verify (the staging database)", echo):
                report.verification = verify_staging(staging_url, config,
                                                     echo)
        if staging_index and not migration_options.skip_upgrade:
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
    if staging_index and staging_index.built:
        report.search_index += search.previous_index_lines(
            staging_index, import_options.drop_old)
        if report.migration:
            report.migration.next_steps = [
                step for step in report.migration.next_steps
                if step != migrate.REINDEX_STEP]
    # The import's time includes the steps run before its swap.
    name, total = report.timings.pop()
    nested = sum(seconds for _, seconds in report.timings)
    report.timings.insert(0, (name, total - nested))
    return report
