"""Checks that run before CKAN builds its app, so a bad config or an
unreachable database is one line for the operator, not a traceback."""
from __future__ import annotations

import configparser
import os

import psycopg2

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError


class PreconditionError(OperatorError):
    pass


class UsageError(PreconditionError):
    exit_code = 2


def check_config_file(path: str | None) -> None:
    if not path:
        raise UsageError("no CKAN config: give -c/--config CKAN_INI or set "
                         "CKAN_INI")
    if not os.path.isfile(path):
        raise UsageError(f"CKAN config {path} does not exist")
    if not os.access(path, os.R_OK):
        raise UsageError(f"CKAN config {path} is not readable")


def database_url(config_path: str) -> str:
    """``sqlalchemy.url`` as CKAN will see it (the environment wins); the
    file is parsed either way, so a broken one is caught here."""
    parser = configparser.ConfigParser(
        defaults={"here": os.path.dirname(os.path.abspath(config_path))},
        strict=False)
    try:
        parser.read(config_path)
        url = parser.get("app:main", "sqlalchemy.url", fallback=None)
    except configparser.Error as error:
        raise UsageError(f"CKAN config {config_path} cannot be read: "
                         f"{str(error).splitlines()[0]}")
    url = os.environ.get("CKAN_SQLALCHEMY_URL") or url
    if not url:
        raise UsageError(f"CKAN config {config_path} has no sqlalchemy.url "
                         "in [app:main]")
    return url


def check_database(config_path: str, create: bool = False) -> None:
    """The configured database must answer; with ``create``, a database that
    does not exist yet is created (owned by the CKAN user) instead."""
    url = database_url(config_path)
    try:
        db.connect(url, connect_timeout=10).close()
        return
    except psycopg2.OperationalError as error:
        message = db.first_line(error)
        missing = "does not exist" in message and "database" in message
        if not (create and missing):
            raise PreconditionError(
                f"cannot connect to the database {db.safe_url(url)}: {message}")
    try:
        db.create_database(url, os.environ.get("DATAGOVUK_PG_ADMIN_URL"))
    except psycopg2.Error as error:
        raise PreconditionError(
            f"cannot create the database {db.safe_url(url)}: "
            f"{db.first_line(error)}")
