"""A private, throw-away PostgreSQL cluster for tests, the demo and the benchmark.

It never touches a system-wide PostgreSQL service: ``initdb`` writes into a fresh
temporary directory, the server listens on loopback and a unix socket in that
directory, on a free port, and ``stop()`` removes everything.  PostgreSQL
refuses to run as root, so when we are root the server runs as the ``postgres``
OS user.

    python -m ckanext.datagovuk.testing.localpg run -- CMD [ARGS...]

starts a cluster, runs CMD with ``CKAN_SQLALCHEMY_URL`` and
``DATAGOVUK_PG_ADMIN_URL`` pointing at it, then stops and removes it and exits
with CMD's status.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

PG_BIN = os.environ.get("DATAGOVUK_PG_BIN", "/usr/lib/postgresql/15/bin")
CKAN_ROLE = "ckan_default"
CKAN_PASSWORD = "pass"
CKAN_DATABASE = "ckan_test"
# Settings that make a sandbox fast; they give up crash safety, which a
# cluster thrown away after each run does not need.
SANDBOX_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """The OS user the server runs as: ``postgres`` when we are root."""
    return "postgres" if os.geteuid() == 0 else None


def _as_server_user(cmd: list[str]) -> list[str]:
    user = _server_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@dataclass
class Cluster:
    directory: str
    port: int

    @property
    def datadir(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def socket_dir(self) -> str:
        return self.directory

    @property
    def superuser(self) -> str:
        return _server_user() or pwd.getpwuid(os.geteuid()).pw_name

    def url(self, database: str = CKAN_DATABASE, user: str = CKAN_ROLE,
            password: str | None = CKAN_PASSWORD) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres", self.superuser, None)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-At",
             "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.superuser, "-d", database, "-c", sql],
            check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            subprocess.run(_as_server_user(
                [os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir,
                 "-m", "immediate", "-w", "stop"]),
                capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        # The new server inherits pg_ctl's stdout: a pipe would never close.
        subprocess.run(_as_server_user(
            [os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir,
             "-l", os.path.join(self.directory, "server.log"),
             "-m", "fast", "-w", "restart"]), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start(parent: str | None = None) -> Cluster:
    """initdb a new cluster in a temporary directory and start it."""
    directory = tempfile.mkdtemp(prefix="datagovuk-pg-", dir=parent)
    user = _server_user()
    if user:
        shutil.chown(directory, user=user)
    cluster = Cluster(directory=directory, port=free_port())
    try:
        subprocess.run(_as_server_user(
            [os.path.join(PG_BIN, "initdb"), "-D", cluster.datadir,
             "-U", cluster.superuser, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8"]),
            check=True, capture_output=True, text=True)
        options = " ".join(f"-c {key}={value}" for key, value in
                           SANDBOX_SETTINGS.items())
        subprocess.run(_as_server_user(
            [os.path.join(PG_BIN, "pg_ctl"), "-D", cluster.datadir, "-w",
             "-l", os.path.join(directory, "server.log"),
             "-o", f"-p {cluster.port} -k {cluster.socket_dir} {options}",
             "start"]),
            check=True, capture_output=True, text=True)
        cluster.psql(f"CREATE ROLE {CKAN_ROLE} LOGIN CREATEDB "
                     f"PASSWORD '{CKAN_PASSWORD}'")
        cluster.psql(f"CREATE DATABASE {CKAN_DATABASE} OWNER {CKAN_ROLE}")
    except subprocess.CalledProcessError as error:
        log = os.path.join(directory, "server.log")
        detail = (error.stderr or "").strip()
        if os.path.exists(log):
            with open(log) as handle:
                detail += "\n" + handle.read()[-2000:]
        cluster.stop()
        raise RuntimeError(f"could not start a private PostgreSQL: {detail}")
    return cluster


def tail(path: str, size: int = 2000) -> str:
    """The end of a local service's log file, for an error message."""
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-size:].strip()
    except OSError:
        return ""


def environment(cluster: Cluster) -> dict[str, str]:
    return {
        "CKAN_SQLALCHEMY_URL": cluster.url(),
        "DATAGOVUK_PG_ADMIN_URL": cluster.admin_url,
        "DATAGOVUK_PG_PORT": str(cluster.port),
        "DATAGOVUK_PG_DIR": cluster.directory,
    }


def run_with(environment: dict[str, str], stop, banner: str,
             command: list[str]) -> int:
    """Run ``command`` with ``environment`` added, forwarding SIGINT and
    SIGTERM to it; ``stop()`` the service afterwards, whatever happens.
    Returns the command's exit status."""
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    try:
        print(banner, file=sys.stderr)
        child = subprocess.Popen(command, env={**os.environ, **environment})
        while True:
            try:
                return child.wait()
            except InterruptedError:
                time.sleep(0.1)
    finally:
        stop()


def main_for(description: str, run, argv: list[str] | None) -> int:
    """The ``run -- CMD`` command line shared by the local services."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run a command with the service")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command")
    return run(command)


def run(command: list[str]) -> int:
    cluster = start()
    return run_with(environment(cluster), cluster.stop,
                    f"private PostgreSQL on 127.0.0.1:{cluster.port} "
                    f"in {cluster.directory}", command)


def main(argv: list[str] | None = None) -> int:
    return main_for(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
