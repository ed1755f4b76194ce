"""``datagovuk verify``: the migrated database against its manifest.

One read-only transaction on a connection of our own runs every check of
:data:`checks.REGISTRY`; then, unless told not to, CKAN's own API is asked
for a sample (:mod:`api_sample`).  Nothing is written.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import exc

from ckanext.datagovuk import db, output
from ckanext.datagovuk.errors import (Interrupted, OperatorError,
                                      sigterm_raises)
from ckanext.datagovuk.verify import checks, manifest, rules

DEFAULT_SAMPLE = 1000
Progress = Callable[[str], None]


@dataclass
class SampleOptions:
    size: int = DEFAULT_SAMPLE
    # Forked workers asking CKAN's API (1: in this process).
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: Optional[int] = None
    everything: bool = False       # --all
    api: bool = True               # False: the database checks only
    database: bool = True          # False: the API sample only (the
                                   # checks ran in migrate's transaction)


@dataclass
class VerifyReport:
    database: str
    seed: Optional[int] = None
    steps: list[checks.CheckResult] = field(default_factory=list)
    error: Optional[str] = None

    def __post_init__(self):
        self.database = db.safe_url(self.database)

    @property
    def ok(self) -> bool:
        return self.error is None and all(step.ok for step in self.steps)

    @property
    def differences(self) -> list[checks.Difference]:
        return [d for step in self.steps for d in step.first]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "database": self.database, "seed": self.seed,
                "error": self.error,
                "steps": [{"name": s.name, "what": s.what,
                           "compared": s.compared, "result": s.result,
                           "reason": s.reason, "differences": s.differences}
                          for s in self.steps],
                "differences": [{"check": s.name, **vars(d)}
                                for s in self.steps for d in s.first]}

    def to_text(self) -> str:
        lines = [f"Verification of {self.database}: "
                 + ("every check holds" if self.ok else "FAILED")]
        if self.seed is not None:
            lines.append(f"  API sample seed: {self.seed} (--seed "
                         f"{self.seed} asks for the same sample)")
        lines += [f"  {step.line()}" for step in self.steps]
        failed = [step for step in self.steps if not step.ok]
        if failed:
            lines.append("First differences (subject: field: expected, "
                         "found):")
            lines += [f"  [{step.name}] {d}" for step in failed
                      for d in step.first]
        return "\n".join(lines)


def _migrated(connection, found: manifest.Manifest) -> bool:
    """Whether 001 ran on the manifest's data (pending then, applied and
    not skipped since)."""
    if rules.DATA_MIGRATION not in found.pending:
        return False
    return bool(connection.exec_driver_sql(
        "SELECT NOT skipped FROM datagovuk.applied_migrations "
        "WHERE filename = %(name)s", {"name": rules.DATA_MIGRATION}).scalar())


def _promoted(connection) -> frozenset[str]:
    if not connection.exec_driver_sql(
            "SELECT to_regclass('datagovuk.promotions') IS NOT NULL").scalar():
        return frozenset()
    return frozenset(connection.exec_driver_sql(
        "SELECT user_id FROM datagovuk.promotions").scalars())


def _require_upgraded(connection) -> None:
    if not connection.exec_driver_sql(
            "SELECT to_regclass('public.alembic_version') IS NOT NULL"
    ).scalar():
        raise OperatorError(
            "this database has not been upgraded yet (no alembic_version: "
            "migrate --skip-upgrade?): verify checks a migrated database")


def context(connection) -> checks.Context:
    """What the checks and the API sample read: the manifest, whether 001
    ran on its data, who was promoted since."""
    found = manifest.load(connection)
    _require_upgraded(connection)
    return checks.Context(connection, found, _migrated(connection, found),
                          _promoted(connection))


def _run_checks(ctx: checks.Context, report: VerifyReport,
                progress: Progress) -> None:
    for check in checks.REGISTRY:
        report.steps.append(checks.run(check, ctx))
        progress(report.steps[-1].line())


def database_checks(connection, report: VerifyReport,
                    progress: Progress) -> checks.Context:
    """Every check of the registry on ``connection`` (in the caller's
    transaction); the context, for the API sample."""
    ctx = context(connection)
    _run_checks(ctx, report, progress)
    return ctx


def _checks_and_sample(ctx: checks.Context, report: VerifyReport,
                       sample: SampleOptions, progress: Progress,
                       request_context: Optional[Callable]) -> None:
    """The database checks, while the API sample's workers ask CKAN; then
    their answers."""
    from ckanext.datagovuk.verify import api_sample

    report.seed = sample.seed if sample.seed is not None \
        else random.SystemRandom().randrange(1 << 31)
    with (request_context or contextlib.nullcontext)(), sigterm_raises(), \
            api_sample.asking(ctx, sample.size, report.seed,
                              sample.everything, sample.jobs) as answers:
        if sample.database:
            _run_checks(ctx, report, progress)
        with output.step(progress, "API sample"):
            report.steps.append(answers(progress))
    progress(report.steps[-1].line())


def verify(url: str, sample: Optional[SampleOptions] = None,
           progress: Optional[Progress] = None,
           request_context: Optional[Callable] = None) -> VerifyReport:
    """Verify the database at ``url``; raises OperatorError (one line)
    when it cannot be verified at all (no manifest, no connection).  The
    API sample asks CKAN's model, which must be bound to ``url``, inside
    ``request_context()`` (CKAN's actions need a request)."""
    sample = sample or SampleOptions()
    progress = progress or (lambda message: None)
    report = VerifyReport(url)
    engine, connection = db.engine_connection(url)
    try:
        with connection.begin() as transaction:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            # The checks' queries read every row once: compiling them
            # costs more than it saves (as in migrate's transaction).
            connection.exec_driver_sql("SET LOCAL jit = off")
            if sample.api:
                _checks_and_sample(context(connection), report, sample,
                                   progress, request_context)
            elif sample.database:
                database_checks(connection, report, progress)
            transaction.rollback()
    except exc.DBAPIError as error:
        raise OperatorError(f"verify failed: {db.first_line(error.orig)}")
    except (KeyboardInterrupt, Interrupted) as error:
        raise OperatorError("verify stopped (Ctrl-C or SIGTERM) before it "
                            "finished: no report; it changed nothing"
                            ) from error
    finally:
        connection.close()
        engine.dispose()
    return report


def in_transaction(connection, progress: Optional[Progress] = None
                   ) -> VerifyReport:
    """The database checks on ``connection``, in its (writing) transaction:
    ``migrate`` runs them after its upgrade, before it commits."""
    report = VerifyReport(connection.engine.url)
    database_checks(connection, report, progress or (lambda message: None))
    return report


def verify_in_child(url: str, ini: str, sample_size: int = DEFAULT_SAMPLE
                    ) -> dict[str, Any]:
    """``ckan -c INI datagovuk verify --json`` on the database ``url`` in a
    child process: CKAN's model, which the API sample asks, is bound to
    one database per process (``CKAN_SQLALCHEMY_URL`` picks it).  Its
    JSON report; OperatorError when it gives none."""
    import json
    import os
    import subprocess
    import sys

    ckan = os.path.join(os.path.dirname(sys.executable), "ckan")
    env = dict(os.environ, CKAN_SQLALCHEMY_URL=str(url))
    result = subprocess.run(
        [ckan, "-c", ini, "datagovuk", "verify", "--json", "--sample",
         str(sample_size)], env=env, capture_output=True, text=True)
    try:
        return json.loads(result.stdout)
    except ValueError:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise OperatorError("verify could not run: "
                            + (lines[-1] if lines else
                               f"exit status {result.returncode}"))


def summary(report: dict[str, Any]) -> str:
    """One line for a JSON report that failed: how many differences, the
    first in full."""
    if report.get("error"):
        return report["error"]
    failed = [step for step in report["steps"] if step["result"] == "failed"]
    first = report["differences"][0] if report["differences"] else {}
    return (f"{sum(step['differences'] for step in failed)} difference(s) "
            f"in {', '.join(step['name'] for step in failed)}; first: "
            f"{first.get('subject')}: {first.get('field')}: expected "
            f"{first.get('expected')!r}, found {first.get('found')!r}")
