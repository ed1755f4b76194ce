"""``migrate``'s check of its own move with ``datagovuk verify``: the
database checks in its transaction before the commit, the API sample after
it.  Reads a :class:`migrate.MigrationReport` (given, never imported:
``migrate`` imports this module).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from sqlalchemy.engine import Connection

from ckanext.datagovuk import output
from ckanext.datagovuk.errors import (Interrupted, OperatorError,
                                      sigterm_raises)
from ckanext.datagovuk.verify import run as verify_run

Progress = Callable[[str], None]


def _skipped(options: Any, pending: list[str]) -> Optional[str]:
    """Why this run does not verify the move, if it does not."""
    if not options.verify:
        return "--no-verify"
    if options.skip_upgrade:
        return "--skip-upgrade: verify checks the upgraded database"
    if not pending:
        return ("no data migration ran in this run: `datagovuk verify` "
                "checks the database as it stands")
    return None


def before_commit(connection: Connection, report: Any, pending: list[str],
                  steps: Callable, progress: Progress) -> None:
    """verify's database checks in this transaction, after the upgrade (the
    schema check compares the upgraded schema): a difference rolls the
    whole move back."""
    with steps("verify") as step:
        reason = _skipped(report.options, pending)
        if reason:
            report.verify_skipped = step.result = f"skipped ({reason})"
            return
        found = verify_run.in_transaction(
            connection, lambda line: progress(f"  {line}"))
        report.verification = found.to_dict()
        if not found.ok:
            raise OperatorError(
                "verify: the migrated database differs from the old site: "
                f"{verify_run.summary(report.verification)}; for a site "
                "migration that changes this on purpose: run with "
                "--no-verify")
        step.result = f"{len(found.steps)} database checks hold"


def api_sample_after_commit(url: str, report: Any, progress: Progress,
                            request_context: Optional[Callable]) -> bool:
    """verify's API sample of the committed move, in this process (CKAN's
    model is bound to ``url``); whether it holds.  A failure makes the
    outcome "committed; API sample failed".  An interrupt stops it (the
    move stays committed)."""
    sample = verify_run.SampleOptions(size=report.options.verify_sample,
                                      database=False)
    try:
        with sigterm_raises(), \
                output.step(progress, "API sample") as step:
            found = verify_run.verify(url, sample, progress,
                                      request_context).to_dict()
            step.result = found["steps"][0]["result"]
    except (KeyboardInterrupt, Interrupted, OperatorError) as error:
        # verify reports an interrupt as an OperatorError caused by it.
        if isinstance(error.__cause__, (KeyboardInterrupt, Interrupted)):
            error = error.__cause__
        why = error or "interrupted"
        raise OperatorError(
            f"committed; the API sample did not finish "
            f"({why}): `datagovuk verify` asks again"
        ) from error
    report.timings.append(("API sample", round(step.seconds, 3)))
    verified = report.verification
    verified.update(ok=verified["ok"] and found["ok"], seed=found["seed"],
                    steps=verified["steps"] + found["steps"],
                    differences=verified["differences"]
                    + found["differences"])
    if not found["ok"]:
        report.outcome = "committed; API sample failed"
    return found["ok"]
