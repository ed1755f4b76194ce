"""Promote users to sysadmin again after the migration, and keep the ledger.

The 001 data migration demotes every sysadmin and records each one in
``datagovuk.demoted_sysadmins``; this module brings back exactly the users an
operator names (by name, id or unambiguous email), the recorded ones
(``demoted=True``) or the configured ones (setting
``ckanext.datagovuk.sysadmins``), and records every promotion in
``datagovuk.promotions`` in the same transaction as the promotion itself.

All or nothing: if any named user is unknown, deleted or ambiguous, nobody is
promoted.  Nothing here ever prompts.  It uses CKAN's model session, so it
runs inside ``ckan -c INI`` (or anything else that has initialised
``ckan.model``) on a database at CKAN's current schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from sqlalchemy import exc, func, text

from ckanext.datagovuk import db, settings, status
from ckanext.datagovuk.errors import OperatorError

VIA_NAMES = "names"
VIA_DEMOTED = "demoted"
VIA_CONFIGURED = "configured"

CREATE_PROMOTIONS = """
CREATE SCHEMA IF NOT EXISTS datagovuk;
CREATE TABLE IF NOT EXISTS datagovuk.promotions (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    user_name text NOT NULL,
    promoted_at timestamptz NOT NULL DEFAULT now(),
    via text NOT NULL
);
"""


class NothingToPromote(OperatorError):
    """Neither users nor a flag: a usage error."""

    exit_code = 2


class UsersNotFound(OperatorError):
    pass


@dataclass
class Promotion:
    name: str
    id: str
    via: str


@dataclass
class PromotionResult:
    before: list[str]
    after: list[str] = field(default_factory=list)
    promoted: list[Promotion] = field(default_factory=list)
    # Users asked for who already were sysadmins: reported, not an error.
    already: list[str] = field(default_factory=list)
    # Recorded demotions of users deleted since: nobody to promote.
    skipped: list[str] = field(default_factory=list)

    @property
    def promoted_names(self) -> list[str]:
        return [promotion.name for promotion in self.promoted]


def _model():
    import ckan.model as model
    return model


def _site_user() -> Optional[str]:
    from ckan.common import config
    return config.get("ckan.site_id")


def not_people() -> set[str]:
    """Users CKAN creates for itself: never listed, never promoted."""
    site_user = _site_user()
    return set(status.PSEUDO_USERS) | ({site_user} if site_user else set())


def current_sysadmins() -> list[str]:
    """Names of the active sysadmins (people only), sorted."""
    model = _model()
    names = model.Session.query(model.User.name).filter(
        model.User.sysadmin.is_(True), model.User.state == "active").all()
    return sorted(name for (name,) in names if name not in not_people())


def check_schema() -> None:
    """Promotion uses CKAN's model, which needs CKAN's current schema."""
    model = _model()
    database = status.database_state(model.Session.connection())
    if not database["is_ckan"]:
        raise OperatorError("this database holds no CKAN site: "
                            "run `datagovuk import` and `datagovuk migrate` first")
    if database["kind"] == "legacy":
        raise OperatorError(
            f"the database still has the legacy CKAN schema (version "
            f"{database['legacy_version']}): run `datagovuk migrate` first")
    if database["pending_core_migrations"]:
        raise OperatorError(
            f"the database is at CKAN revision {database['alembic_revision']}, "
            f"not CKAN's head {database['head']}: run `datagovuk migrate` first")


def find_user(identifier: str):
    """The user named ``identifier``, or with that id, or that email (only
    when exactly one non-deleted user has it).  Returns ``(user, problem)``."""
    model = _model()
    User = model.User
    user = (model.Session.query(User).filter(User.name == identifier).first()
            or model.Session.query(User).filter(User.id == identifier).first())
    if user is None and "@" in identifier:
        matches = model.Session.query(User).filter(
            func.lower(User.email) == identifier.lower(),
            User.state != "deleted").all()
        if len(matches) > 1:
            names = ", ".join(sorted(match.name for match in matches))
            return None, f"{identifier} (email of several users: {names})"
        user = matches[0] if matches else None
    if user is None:
        return None, f"{identifier} (no such user)"
    if user.state == "deleted":
        return None, f"{identifier} (deleted)"
    if user.name in not_people():
        return None, f"{identifier} (CKAN's own pseudo user)"
    return user, None


def resolve(identifiers: Iterable[str]) -> list:
    """The user of each identifier, in order; raises ``UsersNotFound``
    naming every identifier that is not a promotable user."""
    users, problems = [], []
    for identifier in identifiers:
        user, problem = find_user(identifier)
        if problem:
            problems.append(problem)
        users.append(user)
    if problems:
        raise UsersNotFound("nobody promoted: cannot promote "
                            + "; ".join(problems))
    return users


def recorded_demotions() -> list[tuple[str, str]]:
    """``(user_id, user_name)`` of every demotion the migration recorded."""
    model = _model()
    connection = model.Session.connection()
    exists = connection.execute(text(
        "SELECT to_regclass('datagovuk.demoted_sysadmins') IS NOT NULL")).scalar()
    if not exists:
        raise OperatorError(
            "no demotions are recorded in this database "
            "(datagovuk.demoted_sysadmins does not exist): "
            "has `datagovuk migrate` run on it?")
    return [tuple(row) for row in connection.execute(text(
        "SELECT user_id, user_name FROM datagovuk.demoted_sysadmins "
        "ORDER BY user_name"))]


def configured_names() -> list[str]:
    names = settings.get(settings.SYSADMINS)
    if not names:
        raise OperatorError(f"the setting {settings.SYSADMINS} lists nobody")
    return list(names)


def promote(names: Iterable[str] = (), demoted: bool = False,
            configured: bool = False) -> PromotionResult:
    """Make the users named, the recorded demoted ones and/or the configured
    ones sysadmins, in one transaction with their ledger rows; commits."""
    names = list(names)
    if not names and not demoted and not configured:
        raise NothingToPromote(
            "name the users to promote, or give --demoted or --configured")
    model = _model()
    session = model.Session
    try:
        check_schema()
        result = PromotionResult(before=current_sysadmins())
        # Every named user is checked before anything changes.
        asked = [(name, VIA_NAMES) for name in names]
        if configured:
            asked += [(name, VIA_CONFIGURED) for name in configured_names()]
        users = resolve([name for name, _ in asked])
        wanted = [(user, via) for user, (_, via) in zip(users, asked)]
        if demoted:
            for user_id, user_name in recorded_demotions():
                user = session.query(model.User).filter(
                    model.User.id == user_id).first()
                if user is None or user.state == "deleted":
                    result.skipped.append(user_name)
                else:
                    wanted.append((user, VIA_DEMOTED))

        done = set()
        for user, via in wanted:
            if user.id in done:
                continue
            done.add(user.id)
            # Locks the row: a promote running at the same time waits, then
            # finds the user a sysadmin, so each promotion is recorded once.
            session.refresh(user, with_for_update=True)
            if user.sysadmin:
                result.already.append(user.name)
                continue
            user.sysadmin = True
            result.promoted.append(Promotion(user.name, user.id, via))
        if result.promoted:
            session.flush()
            connection = session.connection()
            connection.exec_driver_sql(CREATE_PROMOTIONS)
            connection.execute(text(
                "INSERT INTO datagovuk.promotions (user_id, user_name, via) "
                "VALUES (:id, :name, :via)"),
                [{"id": p.id, "name": p.name, "via": p.via}
                 for p in result.promoted])
        result.after = current_sysadmins()
        session.commit()
    except exc.DBAPIError as error:
        session.rollback()
        raise OperatorError(f"nobody promoted: {db.first_line(error.orig)}")
    except BaseException:
        session.rollback()
        raise
    finally:
        session.remove()
    return result


def promotions() -> list[dict]:
    """The promotion ledger, oldest first (empty when nothing was promoted)."""
    model = _model()
    connection = model.Session.connection()
    if not connection.execute(text(
            "SELECT to_regclass('datagovuk.promotions') IS NOT NULL")).scalar():
        return []
    return [dict(row) for row in connection.execute(text(
        "SELECT user_id, user_name, promoted_at, via FROM datagovuk.promotions "
        "ORDER BY id")).mappings()]


def format_result(result: PromotionResult) -> str:
    def names(items: list[str]) -> str:
        return ", ".join(items) or "(none)"

    lines = [f"Sysadmins before: {names(result.before)}",
             f"Promoted:         {names(result.promoted_names)}"]
    if result.already:
        lines.append(f"Already sysadmin: {names(result.already)}")
    if result.skipped:
        lines.append(f"Not promoted, deleted since their demotion: "
                     f"{names(result.skipped)}")
    lines.append(f"Sysadmins after:  {names(result.after)}")
    return "\n".join(lines)
