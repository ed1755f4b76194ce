"""One import per target database at a time.

An import holds a session-level advisory lock, keyed on the target
database's name, on a connection of its own to the server's maintenance
database for as long as it runs: the lock goes when the import's process
does, however it ends (kill -9 included), so nothing stale is ever left to
clear by hand.  A second import into the same target refuses at once,
naming the first by the process id and host its connection carries in its
``application_name`` and by the time it started; with ``wait`` it waits for
the first to finish instead.

The two-key form of the advisory lock (class, object) keeps these locks
apart from the one-key locks on staging database names
(:meth:`Staging.claim`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Callable

import psycopg2

from ckanext.datagovuk import db, output
from ckanext.datagovuk.errors import OperatorError

# Class key of the lock: the object key is hashtext(target database name).
LOCK_CLASS = "ckanext-datagovuk import"
APPLICATION_PREFIX = "datagovuk import"
# PostgreSQL keeps application_name to NAMEDATALEN - 1 bytes.
APPLICATION_NAME_BYTES = 63
POLL_SECONDS = 0.5

_KEYS = "hashtext(%(class)s), hashtext(%(target)s)"
_HOLDER = (
    "SELECT a.application_name, "
    "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
    "a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database "
    "WHERE datname = current_database()) "
    "AND l.classid = hashtext(%(class)s)::oid "
    "AND l.objid = hashtext(%(target)s)::oid")


def application_name(pid: int | None = None, host: str | None = None) -> str:
    """``datagovuk import <pid>@<host>``, cut to what PostgreSQL keeps."""
    name = (f"{APPLICATION_PREFIX} {pid or os.getpid()}@"
            f"{host or socket.gethostname()}")
    return name.encode()[:APPLICATION_NAME_BYTES].decode("utf-8", "ignore")


def describe_holder(application: str | None, started: str | None,
                    backend_pid: int | None) -> str:
    """The holder as an operator can find it: its process and host (from
    its application_name), and when it started."""
    application = application or ""
    if application.startswith(APPLICATION_PREFIX + " "):
        pid, _, host = application[len(APPLICATION_PREFIX) + 1:].partition("@")
        who = f"pid {pid}" + (f" on {host}" if host else "")
    else:
        who = f"server process {backend_pid}" if backend_pid else \
            "a process whose details this database user may not see"
    return who + (f", started {started} UTC" if started else "")


class TargetLock:
    """The lock of one import into the database of ``target_url``."""

    def __init__(self, target_url, echo: Callable[[str], None]):
        self.target_url = db.parse(target_url)
        self.target = self.target_url.database
        self.echo = echo
        self.connection = None
        self.params = {"class": LOCK_CLASS, "target": self.target}

    def acquire(self, wait: bool = False) -> None:
        """Take the lock; if another import holds it, refuse in one line
        naming it, or with ``wait`` say so once and wait for it."""
        self.connection = self._connect()
        announced = False
        while not self._try():
            holder = self.holder()
            if holder is None:
                continue        # released between the two looks
            if not wait:
                self.release()
                raise OperatorError(
                    f"another import into the database {self.target} is "
                    f"running ({holder}); wait for it to finish, or give "
                    "--wait to start when it has")
            if not announced:
                output.notice(self.echo, f"waiting for the import into "
                              f"{self.target} already running ({holder}) to "
                              "finish...")
                announced = True
            time.sleep(POLL_SECONDS)
        if announced:
            output.notice(self.echo, f"the other import into {self.target} "
                          "has finished")

    def reassert(self) -> None:
        """Hold the lock again if its session was lost (the server
        restarted); refuse to go on when another import took it since."""
        if self.connection is None or db.still_open(self.connection):
            return
        self.connection = self._connect()
        if not self._try():
            holder = self.holder() or "which has finished since"
            raise OperatorError(
                f"the session holding the import lock on {self.target} was "
                f"lost (did the server restart?) and another import has "
                f"started since ({holder}); nothing was imported")

    def holder(self) -> str | None:
        """Who holds the lock, or None when nobody does any more."""
        with self.connection.cursor() as cur:
            cur.execute(_HOLDER, self.params)
            row = cur.fetchone()
        return describe_holder(*row) if row else None

    def release(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self.connection.close()
            self.connection = None

    def _connect(self):
        connection = db.open_connection(db.maintenance_url(self.target_url),
                                        "the database server")
        with connection.cursor() as cur:
            cur.execute("SET application_name = %s", (application_name(),))
        return connection

    def _try(self) -> bool:
        with self.connection.cursor() as cur:
            cur.execute(f"SELECT pg_try_advisory_lock({_KEYS})", self.params)
            return cur.fetchone()[0]
