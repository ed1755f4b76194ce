"""Run CKAN's own alembic migrations on a connection we hold.

CKAN's ``env.py`` opens a connection of its own (and rebinds CKAN's global
session to it), so a ``ckan db upgrade`` cannot share a transaction with
anything else.  Driving the same migration scripts through alembic's
``EnvironmentContext`` on our connection lets the data migrations, the fixes
around CKAN's upgrade bugs and the upgrade itself commit or roll back as one.
What CKAN's ``Repository.setup_migration_version_control`` sets is set here
too: the legacy sqlalchemy-migrate version, which makes every revision
numbered at or below it a no-op (CKAN's own row of ``migrate_version``,
:func:`legacy.ckan_legacy_version`, never the first row it finds).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import ckan.migration

CORE_SCRIPTS = os.path.dirname(ckan.migration.__file__)
CORE_VERSION_TABLE = "alembic_version"
# CKAN 2.2's schema: legacy sqlalchemy-migrate 071 is alembic c16f081ef73a.
CKAN_22_REVISION = "c16f081ef73a"
CKAN_22_LEGACY_VERSION = 71
# The last legacy sqlalchemy-migrate version: CKAN's revision 090 drops
# migrate_version; CKAN 2.12 ships 001 to 089 as alembic revisions.
LAST_LEGACY_VERSION = 89

StepCallback = Callable[[str, str, float], None]


def _config(scripts: str, legacy_version: Optional[int]) -> Config:
    config = Config()
    config.set_main_option("script_location", scripts)
    config.set_main_option("sqlalchemy_migrate_version",
                           str(legacy_version or 0))
    return config


def script_directory(scripts: str = CORE_SCRIPTS) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(scripts, None))


def head(scripts: str = CORE_SCRIPTS) -> str:
    return script_directory(scripts).get_current_head()


def legacy_revision(number: int, scripts: str = CORE_SCRIPTS) -> str:
    """The alembic revision CKAN ships for legacy sqlalchemy-migrate
    migration ``number`` (its file is named ``0NN_<revision>_...``)."""
    prefix = f"{number:03d}_"
    for revision in script_directory(scripts).walk_revisions():
        if os.path.basename(revision.path).startswith(prefix):
            return revision.revision
    raise ValueError(f"CKAN ships no revision for legacy version {number}")


def current_revision(connection: Connection,
                     version_table: str = CORE_VERSION_TABLE) -> Optional[str]:
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table})
    return context.get_current_revision()


def pending_revisions(connection: Connection, scripts: str = CORE_SCRIPTS,
                      version_table: str = CORE_VERSION_TABLE) -> list[str]:
    """Revisions between the database's current one and head, oldest first."""
    current = current_revision(connection, version_table)
    script = script_directory(scripts)
    revisions = list(script.iterate_revisions(script.get_current_head(),
                                              current))
    return [revision.revision for revision in reversed(revisions)]


def upgrade(connection: Connection, destination: str = "head",
            scripts: str = CORE_SCRIPTS,
            version_table: str = CORE_VERSION_TABLE,
            legacy: Optional[int] = None,
            on_step: Optional[StepCallback] = None) -> tuple[Optional[str], Optional[str]]:
    """Upgrade to ``destination`` inside the caller's transaction; never
    commits.  ``on_step(revision, doc, seconds)`` is called after each
    revision.  Returns the revisions before and after."""
    config = _config(scripts, legacy)
    script = ScriptDirectory.from_config(config)
    before = current_revision(connection, version_table)
    last = [time.monotonic()]

    def step_done(ctx, step, heads, run_args):
        now = time.monotonic()
        if on_step:
            revision = step.up_revision
            doc = (revision.doc or "").strip() if revision else ""
            on_step(str(step.up_revision_id), doc, now - last[0])
        last[0] = now

    def upgrade_revisions(revision, context):
        return script._upgrade_revs(destination, revision)

    with EnvironmentContext(config, script, fn=upgrade_revisions,
                            destination_rev=destination) as environment:
        environment.configure(connection=connection,
                              version_table=version_table,
                              on_version_apply=step_done)
        environment.run_migrations()
    return before, current_revision(connection, version_table)
