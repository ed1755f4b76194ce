"""What ``migrate --from`` would stop for, found before it transfers
anything.

``source_facts.sql`` reads the old site's database (read only) with psql:
on the old host in the same ssh invocation as the pg_dump version probe,
or, for a dump file, here on the staging database once the data is in and
before the indexes are built.  Its answer is judged by the checks
``migrate`` itself runs (:func:`legacy.version_from_rows`,
:func:`preflight.refusal`, :func:`preflight.data_migrations_blocked`, the
email clash of :mod:`traps`), as the database will stand after the data
migrations: users data migration 001 deletes do not count in an email
clash.  Each finding is a :class:`Decision`: settled by an option given,
needing one (named), or a refusal no option settles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional
from xml.etree import ElementTree

from ckanext.datagovuk import legacy, output, preflight, runner, traps
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.migrate import MigrationOptions
from ckanext.datagovuk.transfer import SourceCheck

SQL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "source_facts.sql")
# The data migration that deletes the users who never published.
DELETES_USERS = "001_bytemark_to_govuk.sql"
EMAIL_CLASH_OPTION = "--resolve-email-clash keep-oldest"


@dataclass
class SourceFacts:
    tables: list[str]
    migrate_version: Optional[list[tuple]]      # None: no such table
    alembic_revision: Optional[str]
    applied: list[str]
    # (folded email, id, name, email, created, kept by 001)
    email_clash_users: list[tuple]


def _xml_rows(text: str) -> list[dict[str, Optional[str]]]:
    return [{column.tag: column.text for column in row}
            for row in ElementTree.fromstring(text).findall("row")]


def parse(answer: str) -> SourceFacts:
    """psql's answer to ``source_facts.sql``: (kind, value) pairs, all
    separated by NUL bytes."""
    fields = answer.split("\0")
    if fields and not fields[-1].strip():
        fields.pop()
    if len(fields) % 2:
        raise OperatorError("the answer of the old database to "
                            "source_facts.sql cannot be read")
    facts = SourceFacts([], None, None, [], [])
    for kind, value in zip(fields[::2], fields[1::2]):
        kind = kind.strip()
        if kind == "table":
            facts.tables.append(value)
        elif kind == "migrate_version":
            facts.migrate_version = [
                (row["repository_id"], row["repository_path"],
                 int(row["version"]) if row["version"] else None)
                for row in _xml_rows(value)]
        elif kind == "alembic_version":
            revisions = [row["version_num"] for row in _xml_rows(value)]
            facts.alembic_revision = revisions[0] if revisions else None
        elif kind == "applied":
            facts.applied = [row["filename"] for row in _xml_rows(value)]
        elif kind == "email_clash_users":
            facts.email_clash_users = [
                (row["folded"], row["id"], row["name"], row["email"],
                 row["created"], row["kept"] == "true")
                for row in _xml_rows(value)]
    return facts


@dataclass
class Decision:
    found: str              # what was found, short
    refusal: str            # the one-line error when it stops the run
    option: str = ""        # what settles it; "" when nothing does
    settled: bool = False   # the options given settle it

    def line(self) -> str:
        if self.settled:
            return f"decided: {self.found} (settled by {self.option})"
        if self.option:
            return f"needs a decision: {self.found}: give {self.option}"
        return f"refused: {self.refusal}"


def email_clash_groups(facts: SourceFacts, only_kept: bool
                       ) -> list[tuple[str, list[tuple]]]:
    """The clashes as traps.email_clashes lists them, among the users that
    will stand (``only_kept``: those data migration 001 keeps)."""
    groups: dict[str, list[tuple]] = {}
    for folded, user_id, name, email, created, kept in \
            facts.email_clash_users:
        if kept or not only_kept:
            groups.setdefault(folded, []).append(
                (user_id, name, email, created))
    return [(folded, users) for folded, users in groups.items()
            if len(users) > 1]


def judge(facts: SourceFacts, options: MigrationOptions, files: list[str]
          ) -> list[Decision]:
    """Each decision or refusal ``migrate`` would stop for on the database
    the facts describe, with the options given."""
    try:
        version = (None if facts.migrate_version is None
                   else legacy.version_from_rows(facts.migrate_version))
    except OperatorError as error:
        return [Decision(str(error), f"the old database's {error}")]
    state = preflight.state_of(facts.tables, facts.alembic_revision, version)
    refused = preflight.refusal(state, data_migrations=False)
    if refused:
        return [Decision(refused, refused)]
    pending = [name for name in files if name not in facts.applied]
    decisions = []
    blocked = preflight.data_migrations_blocked(state, pending)
    if blocked:
        decisions.append(Decision(
            f"the data migrations cannot apply to a {state.describe()}",
            blocked, preflight.NO_DATA_MIGRATIONS_OPTION,
            settled=not options.data_migrations))
    runs_deletion = (options.data_migrations and not blocked
                     and DELETES_USERS in pending)
    groups = email_clash_groups(facts, only_kept=runs_deletion)
    if groups and state.kind == "legacy" and not options.skip_upgrade:
        decisions.append(Decision(
            f"{len(groups)} email address(es) shared, ignoring case, by "
            "active users the migration keeps (CKAN 2.12 forbids it)",
            traps.email_clash_message(groups), EMAIL_CLASH_OPTION,
            settled=options.resolve_email_clash == "keep-oldest"))
    return decisions


def refusals(decisions: list[Decision]) -> list[Decision]:
    return [decision for decision in decisions if not decision.settled]


def decide(answer: str, options: MigrationOptions) -> list[Decision]:
    """The decisions psql's answer to ``source_facts.sql`` calls for."""
    files = [migration.name
             for migration in runner.discover(options.migrations_dir)]
    return judge(parse(answer), options, files)


def source_check(options: MigrationOptions, settings: dict[str, str],
                 echo: Callable[[str], None]) -> SourceCheck:
    """What the import runs on the old site's database before it transfers
    anything (or, for a dump file, once the data is in): each decision is
    printed; the first refusal stops the import."""
    def judge_answer(answer: str) -> None:
        decisions = decide(answer, options)
        for decision in decisions:
            output.notice(echo, f"  {decision.line()}")
        if not decisions:
            output.notice(echo, "  none: nothing migrate would stop for")
        stopping = refusals(decisions)
        if stopping:
            raise OperatorError(stopping[0].refusal)

    return SourceCheck(SQL_PATH, settings.get(runner.SITE_USER_GUC, ""),
                       judge_answer)
