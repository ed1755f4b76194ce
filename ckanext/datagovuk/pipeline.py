"""``datagovuk migrate --from SOURCE``: the whole move as one run.

The import loads the old site into a staging database; the data migrations,
CKAN's schema upgrade and the promotion of the configured sysadmins all run
on that staging database; ``datagovuk verify`` checks it against the
manifest the migration recorded (in a child ``ckan`` process, whose CKAN
model is bound to the staging database), and only then is it swapped in as
the site's database.  Whatever fails, at whatever step, the staging
database is dropped and the site's database is exactly as it was: never
half-migrated.  The staging database's search index is built last, into a
new Solr core (``search.staging``), and swapped in with the database.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import (db, decisions, migrate, output, runner,
                               settings, sysadmins, transfer)
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.search import staging as search
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
        if self.verification and verbose:
            lines += ["Verify (the staging database, before the swap): "
                      "every check holds"] + [
                f"  {step['name']}: {step['compared']} {step['what']}: "
                f"{step['result']}" for step in self.verification["steps"]]
        if self.search_index:
            lines.append("Search index: " + "; ".join(self.search_index))
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


def verify_staging(staging_url: str, config, echo: Echo,
                   sample_size: int = verify_run.DEFAULT_SAMPLE) -> dict:
    """``datagovuk verify`` on the staging database, in a child ``ckan``
    process; a difference stops the move before the swap."""
    found = verify_run.verify_in_child(staging_url, config["__file__"],
                                       sample_size)
    if not found["ok"]:
        raise OperatorError("verify found the staging database differs from "
                            f"the old site: {verify_run.summary(found)}; no "
                            "swap: this site's database is as it was")
    output.detail(echo, f"every check holds (API sample seed "
                        f"{found['seed']})")
    return found


def plan(source: str, target_url: str, import_options: transfer.ImportOptions,
         migration_options: migrate.MigrationOptions, plugins: list[str],
         config, search_index: bool = True) -> list[str]:
    """What ``migrate --from`` would do, step by step; changes nothing."""
    steps = [f"1. import {source} into a staging database next to "
             f"{db.safe_url(target_url)}:"]
    # The import's swap (or refusal) is the last step here: it waits for
    # the others.
    lines = transfer.plan(source, target_url, import_options)
    swap = lines.pop()
    steps += ["     " + line for line in lines]
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
                 "difference stops here" if migration_options.verify else
                 "4. no verify of the staging database (--no-verify)")
    if search_index:
        steps.append("5. build the staging database's search index into a "
                     "new Solr core (ckan datagovuk reindex --into CORE "
                     "--no-swap, in a child process on the staging "
                     "database)")
        steps.append(f"6. swap the new core in, then {swap}")
    else:
        steps.append("5. no search index (--no-reindex): run datagovuk "
                     "reindex after the move")
        steps.append(f"6. {swap}")
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
        with output.step(echo, "migrate", steps) as step:
            # verify runs whole below, after the promotion.
            report.migration = migrate.migrate(
                staging_url, plugins, migration_settings, migration_options,
                progress=echo, verify_here=False)
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
        if not migration_options.skip_upgrade:
            with output.step(echo, "verify the move", steps) as step:
                if not migration_options.verify:
                    step.result = "skipped (--no-verify)"
                else:
                    report.verification = verify_staging(
                        staging_url, config, echo,
                        migration_options.verify_sample)
                    step.result = (f"every check holds (seed "
                                   f"{report.verification['seed']})")
        if staging_index and not migration_options.skip_upgrade:
            with output.step(echo, "reindex", steps) as step:
                report.search_index = staging_index.build(staging_url, echo)
                step.result = f"into core {staging_index.core}"

    steps: list[output.Step] = []
    try:
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
    # What this run did already is no next step.
    done = migrate.next_steps(migration_options.config_path)
    kept = migrate.next_steps(
        migration_options.config_path, verified=bool(report.verification),
        indexed=bool(staging_index and staging_index.built))
    report.migration.next_steps = [
        step for step in report.migration.next_steps
        if step not in done or step in kept]
    report.timings = [*report.import_result.phases,
                      *((step.name, step.seconds) for step in steps)]
    return report
