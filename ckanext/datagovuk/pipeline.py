"""``datagovuk migrate --from SOURCE``: the whole move as one run.

The import loads the old site into a staging database; the data migrations,
CKAN's schema upgrade and the promotion of the configured sysadmins all run
on that staging database, and only then is it swapped in as the site's
database.  Whatever fails, at whatever step, the staging database is dropped
and the site's database is exactly as it was: never half-migrated.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import (db, migrate, output, runner, settings,
                               sysadmins, transfer)
from ckanext.datagovuk.errors import OperatorError

Echo = Callable[[str], None]


@dataclass
class PipelineReport:
    import_result: Optional[transfer.ImportResult] = None
    migration: Optional[migrate.MigrationReport] = None
    promotion: Optional[sysadmins.PromotionResult] = None
    timings: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"import": self.import_result, "migration":
                self.migration.to_dict() if self.migration else None,
                "promotion": self.promotion, "timings": self.timings}

    def to_text(self, verbose: bool = False) -> str:
        """The report: the import and the migration in short (in full
        with ``verbose``) and the sysadmins; the steps' table is the
        caller's."""
        lines = []
        if self.import_result:
            summary = self.import_result.summary_lines()
            lines += summary if verbose else summary[:1]
        if self.migration:
            lines.append(self.migration.to_text(verbose))
        # Without -v the table's promote step names who was promoted.
        if self.promotion and verbose:
            lines.append(sysadmins.format_result(self.promotion))
        elif not self.promotion:
            lines.append(f"Sysadmins: none configured ({settings.SYSADMINS})")
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


def plan(source: str, target_url: str, import_options: transfer.ImportOptions,
         migration_options: migrate.MigrationOptions, plugins: list[str],
         config) -> list[str]:
    """What ``migrate --from`` would do, step by step; changes nothing."""
    steps = [f"1. import {source} into a staging database next to "
             f"{db.safe_url(target_url)}:"]
    # The import's swap (or refusal) is step 4 here: it waits for steps
    # 2 and 3.
    lines = transfer.plan(source, target_url, import_options)
    swap = lines.pop()
    steps += ["     " + line for line in lines]
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
    steps.append(f"4. {swap}")
    return steps


def migrate_from(source: str, target_url: str,
                 import_options: transfer.ImportOptions,
                 migration_options: migrate.MigrationOptions,
                 plugins: list[str], config, echo: Echo) -> PipelineReport:
    if migration_options.dry_run:
        raise OperatorError("--from cannot be combined with --dry-run: use "
                            "--plan to see what it would do")
    report = PipelineReport()
    migration_settings = runner.settings_from_config(config)
    configured = settings.get(settings.SYSADMINS, config)

    def finish_in_staging(staging_url: str) -> None:
        with output.step(echo, "migrate", steps) as step:
            report.migration = migrate.migrate(
                staging_url, plugins, migration_settings, migration_options,
                progress=echo)
            # The staging database becomes the target with the swap.
            report.migration.database = db.safe_url(target_url)
            step.result = (f"{report.migration.schema_before} -> "
                           f"{report.migration.schema_after}")
        if configured and not migration_options.skip_upgrade:
            with output.step(echo, "promote --configured", steps) as step, \
                    _model_session_on(staging_url):
                report.promotion = sysadmins.promote(configured=True)
                step.result = ", ".join(report.promotion.promoted_names) \
                    or "nobody new"

    steps: list[output.Step] = []
    report.import_result = transfer.import_database(
        source, target_url, import_options, echo=echo,
        before_swap=finish_in_staging)
    report.timings = [*report.import_result.phases,
                      *((step.name, step.seconds) for step in steps)]
    return report
