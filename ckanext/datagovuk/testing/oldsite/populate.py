"""Fill an empty old schema with a generated site in one transaction, the
constraints set aside while rows are copied; ``generate`` builds the schema
first."""
from __future__ import annotations

import time

from psycopg2 import sql

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.testing import oldhistory

from .core import Core
from .datasets import Datasets
from .harvest import Harvest
from .known import LEGACY_VERSION, MIGRATE_REPOSITORY_PATH, MIN_DATASETS
from .loader import Loader
from .others import Others
from .people import People
from .progress import Progress, say
from .publishers import Publishers
from .resources import Resources
from .schema import build_schema, read_sql


class Generator(People, Publishers, Harvest, Datasets, Resources, Others, Core):
    """The site's rows, part by part, from one seeded random stream: the
    parts must run in ``populate``'s order for a seed to give one site."""


def _set_aside_constraints(cursor) -> tuple[list, list]:
    """Drop the foreign keys and plain indexes of the public schema (kept:
    primary keys, unique constraints), returning what restores them.  Rows
    copied into bare tables load many times faster; adding the constraints
    back checks every row at once, as pg_restore does."""
    cursor.execute(read_sql("foreign_keys.sql"))
    foreign_keys = cursor.fetchall()
    cursor.execute(read_sql("plain_indexes.sql"))
    indexes = cursor.fetchall()
    # The table comes as regclass text, quoted where it needs to be.
    for table, name, _definition in foreign_keys:
        cursor.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.SQL(table), sql.Identifier(name)))
    for name, _definition in indexes:
        cursor.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return foreign_keys, indexes


def _restore_constraints(cursor, foreign_keys, indexes) -> None:
    for _name, definition in indexes:
        cursor.execute(definition)
    for table, name, definition in foreign_keys:
        cursor.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(table), sql.Identifier(name), sql.SQL(definition)))


def _check_empty_old_schema(cursor, url, harvest: bool) -> int:
    """Refuse what populate cannot fill; the schema's legacy version."""
    cursor.execute("SELECT to_regclass('public.migrate_version'), "
                   "to_regclass('public.harvest_source')")
    migrate_version, harvest_source = cursor.fetchone()
    if migrate_version is None:
        raise OperatorError(f"{db.safe_url(url)} has no old (CKAN 2.2) "
                            "schema: build it first (build_schema)")
    if harvest and harvest_source is None:
        raise OperatorError(f"{db.safe_url(url)} has no harvest tables: "
                            "populate it with harvest=False")
    cursor.execute("SELECT EXISTS (SELECT 1 FROM package)")
    if cursor.fetchone()[0]:
        raise OperatorError(f"{db.safe_url(url)} already holds datasets: "
                            "populate needs an empty old schema")
    cursor.execute("SELECT version FROM migrate_version "
                   "WHERE repository_path = %s", (MIGRATE_REPOSITORY_PATH,))
    return cursor.fetchone()[0]


def populate(url, datasets: int = 200, seed: int = 1, harvest: bool = True,
             progress: Progress = None) -> dict:
    """Fill the old schema of ``url`` (``build_schema``) with a site of
    ``datasets`` datasets, deterministic from ``seed``, in one transaction.
    Returns the number of rows per table."""
    if datasets < MIN_DATASETS:
        raise OperatorError(
            f"--datasets must be at least {MIN_DATASETS} (got {datasets})")
    started = time.monotonic()
    connection = db.connect(url)
    try:
        with connection:
            with connection.cursor() as cursor:
                version = _check_empty_old_schema(cursor, url, harvest)
                cursor.execute("SET LOCAL synchronous_commit = off")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                foreign_keys, indexes = _set_aside_constraints(cursor)
                loader = Loader(cursor, progress, version)
                generator = Generator(loader, datasets, seed, harvest,
                                       progress)
                steps = [("users", generator.build_users),
                         ("publishers", generator.build_publishers),
                         ("memberships", generator.build_memberships)]
                if harvest:
                    steps.append(("harvest sources",
                                  generator.build_harvest_sources))
                steps += [("tags", generator.build_tags),
                          ("datasets", generator.build_datasets),
                          ("user history", generator.build_user_history),
                          ("other tables", generator.build_misc)]
                for label, step in steps:
                    step_started = time.monotonic()
                    step()
                    say(progress, f"{label}: done "
                         f"({time.monotonic() - step_started:.1f}s)")
                loader.flush()
                step_started = time.monotonic()
                _restore_constraints(cursor, foreign_keys, indexes)
                say(progress, f"indexes and foreign keys: {len(indexes)} and "
                     f"{len(foreign_keys)} added back, every row checked "
                     f"({time.monotonic() - step_started:.1f}s)")
                cursor.execute("SELECT setval('system_info_id_seq', "
                               "(SELECT max(id) FROM system_info))")
                cursor.execute("ANALYZE")
                step_started = time.monotonic()
                history = oldhistory.add_history(cursor)
                say(progress, f"history: {history['activities']} dataset "
                    f"activities, up to {history['most_per_dataset']} per "
                    f"dataset ({time.monotonic() - step_started:.1f}s)")
    except OperatorError:
        raise
    except Exception as error:
        raise OperatorError(f"cannot populate {db.safe_url(url)}: "
                            f"{db.first_line(error)}") from error
    finally:
        connection.close()
    counts = {table: count for table, count in loader.counts.items() if count}
    for table, count in counts.items():
        say(progress, f"  {table}: {count} rows "
             f"({loader.seconds[table]:.1f}s copying)")
    say(progress, f"populated {datasets} datasets, {sum(counts.values())} "
         f"rows in {time.monotonic() - started:.1f}s")
    return counts


def generate(url, datasets: int = 200, seed: int = 1, harvest: bool = True,
             progress: Progress = None, version: int = LEGACY_VERSION) -> dict:
    """``build_schema`` then ``populate``: a whole old site at legacy
    ``version``."""
    if datasets < MIN_DATASETS:
        raise OperatorError(
            f"--datasets must be at least {MIN_DATASETS} (got {datasets})")
    build_schema(url, harvest=harvest, progress=progress, version=version)
    return populate(url, datasets=datasets, seed=seed, harvest=harvest,
                    progress=progress)
