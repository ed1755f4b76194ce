"""Import an old CKAN site's database into the database of this CKAN's config,
all or nothing.

Sources (``parse_source``):

* ``[user@]host``: ``pg_dump -Fc`` runs on the remote host over ssh and its
  output is restored as it arrives (compressed on the way by ``zstd -1`` when
  both hosts have zstd, else by pg_dump itself with ``-Z1``, or at the level
  ``compression`` when one is given): the
  tables and their data by one ``pg_restore`` reading the stream, then, with
  ``jobs`` > 1, the indexes, keys and constraints by ``pg_restore -j N`` from
  the dump's head (a custom dump starts with its table of contents), so
  nothing of the dump is stored on either host.  With ``jobs`` = 1 one
  ``pg_restore`` does it all.  With ``remote_format`` "directory" it writes
  a directory-format dump with ``-j N`` into a temporary directory there
  instead; each table's data file is sent back as soon as pg_dump has
  finished it (a tar archive each, then the rest with ``toc.dat``), unpacked
  here and, once all has arrived, loaded with ``pg_restore -j N``: a
  parallel dump, at the cost of the compressed dump's size in disk on both
  hosts and of restoring nothing until the whole dump is here
  (docs/benchmark.rst compares the two);
* ``[user@]host:PATH``: a dump file on the remote host, streamed with ``cat``
  and restored as it arrives, as above;
* a local file: a custom-format dump (``pg_restore``) or a plain SQL dump
  made by ``pg_dump`` (``psql``, stopping at the first error, in one
  transaction).  The format is told by the content (custom dumps start with
  ``PGDMP``), not by the file name.  A local directory-format dump (a
  directory holding ``toc.dat``, e.g. one kept with ``--keep-dump``) loads
  with ``pg_restore -j N``.

The load goes into a staging database ``<target>__import_<pid>``, owned by the
CKAN database user, restored with no owners and no privileges as that user.
Only when the whole load succeeded and the result is a CKAN database is it
swapped in, by renaming both databases in one transaction.  Any failure
drops the staging database and leaves the target as it was.

Plain dumps: statements that set owners or privileges (``ALTER ... OWNER TO``,
``GRANT``, ``REVOKE``, ``SET SESSION AUTHORIZATION``, ``ALTER DEFAULT
PRIVILEGES``) and ``COMMENT ON EXTENSION`` (which only the extension's owner
may run) are dropped while streaming, outside ``COPY`` data, so a dump made
with or without ``-O -x`` loads the same way: everything owned by the CKAN
user.  A dump that switches database (``\\connect``, from ``pg_dump -C`` or
``pg_dumpall``) is refused.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import psycopg2
from psycopg2 import sql

from ckanext.datagovuk import db, workdir
from ckanext.datagovuk.errors import OperatorError

DEFAULT_REMOTE_DB = "ckan"
DEFAULT_REMOTE_PG_DUMP = "pg_dump"
DEFAULT_ADMIN_URL_ENV = "DATAGOVUK_PG_ADMIN_URL"
# Two jobs: with one, pg_restore builds one index at a time
# (docs/benchmark.rst).
DEFAULT_JOBS = 2
# zlib level 1 in the remote pg_dump (in each of its jobs for a directory
# dump): measured faster than -Z0 even on loopback (4x less data through
# ssh) and than the default level 6 (which takes a core from the restore),
# and what a real network needs.
DEFAULT_COMPRESSION = 1
# Better still, when both hosts have zstd and no level is asked for: the
# remote pg_dump writes -Z0 into zstd -1, and zstd -d here feeds the
# restore.  On a 50,000-dataset site that sends 154 MB instead of pg_dump
# -Z1's 188 MB and spends 2.6 CPU-s compressing instead of 6.3; the stream
# took 15.7 to 19.5 s instead of 20.0 to 20.3 s over the 100 Mbit/s link
# (docs/benchmark.rst).
ZSTD = "zstd"
# --single-thread: zstd's default (multi-threaded) mode holds back several
# MB before it writes anything, which stalls a slow dump's first bytes; one
# thread writes each 128 KB block as it is done, and spends less CPU.
ZSTD_COMPRESS_OPTIONS = ("-1", "-q", "-c", "--single-thread")
# What the remote version check prints when the remote host has a zstd that
# takes those options (a zstd too old for --single-thread does not).
REMOTE_ZSTD_MARKER = "datagovuk: zstd available"
TOC_FILE = "toc.dat"
# How pg_dump dumps on the remote host: "custom" is one stream restored as it
# arrives (indexes and keys with pg_restore -j N once the data is in);
# "directory" is pg_dump -Fd -j N into a temporary directory there, restored
# with -j N once all has arrived.  Over a network the stream overlaps the
# transfer with the restore and wins; README.rst has the measurements.
REMOTE_FORMATS = ("custom", "directory")
DEFAULT_REMOTE_FORMAT = "custom"
# pg_dump -j came with 9.3; with --remote-format directory an older remote
# pg_dump sends a custom-format dump instead, restored as it arrives.
PARALLEL_PG_DUMP = (9, 3)
# pg_dump --no-sync came with 10 (which began fsyncing its output).
NO_SYNC_PG_DUMP = (10,)
CUSTOM_MAGIC = b"PGDMP"
PLAIN_MARKER = b"PostgreSQL database dump"
CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL = 2.0
# How much of a streamed custom dump may be held back to read its table of
# contents (a CKAN schema's is about 100 KB) before the load starts.
TOC_PEEK_LIMIT = 64 << 20
KEY_TABLES = ("package", "user", "group", "member", "resource")
VERSION_TABLES = ("migrate_version", "alembic_version")
COUNTED_TABLES = ("package", "resource", "user", "group", "member",
                  "package_extra", "revision", "activity")
# Debian packages of extensions that PostgreSQL itself does not ship.
EXTENSION_PACKAGES = {
    "postgis": "postgresql-{major}-postgis-3",
    "postgis_raster": "postgresql-{major}-postgis-3",
    "postgis_topology": "postgresql-{major}-postgis-3",
    "postgis_tiger_geocoder": "postgresql-{major}-postgis-3",
    "address_standardizer": "postgresql-{major}-postgis-3",
    "pgrouting": "postgresql-{major}-pgrouting",
    "pg_repack": "postgresql-{major}-repack",
    "pgaudit": "postgresql-{major}-pgaudit",
    "plv8": "postgresql-{major}-plv8",
    "pg_partman": "postgresql-{major}-partman",
    "hypopg": "postgresql-{major}-hypopg",
    "postgresql_unit": "postgresql-{major}-unit",
    "ip4r": "postgresql-{major}-ip4r",
}
SSH_BASE_OPTIONS = (
    # Never prompt: an import runs unattended, a prompt would hang it.
    "BatchMode=yes",
    "StrictHostKeyChecking=yes",
    "ConnectTimeout=20",
    # A link that dies silently mid-stream ends the transfer within a minute.
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
)
NOISE_PREFIXES = ("Warning: Permanently added", "** ", "Pseudo-terminal")

Echo = Callable[[str], None]


def _silent(_message: str) -> None:
    pass


# --------------------------------------------------------------------------
# Sources

@dataclass(frozen=True)
class Source:
    kind: str                 # one of REMOTE_DATABASE, REMOTE_FILE, LOCAL_FILE
    host: str | None = None   # [user@]host
    path: str | None = None

    REMOTE_DATABASE = "remote-database"
    REMOTE_FILE = "remote-file"
    LOCAL_FILE = "local-file"

    @property
    def is_remote(self) -> bool:
        return self.kind != self.LOCAL_FILE

    def describe(self, remote_db: str = DEFAULT_REMOTE_DB) -> str:
        if self.kind == self.REMOTE_DATABASE:
            return f"database {remote_db!r} on {self.host}"
        if self.kind == self.REMOTE_FILE:
            return f"{self.path} on {self.host}"
        return self.path


_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._+-]+@)?[A-Za-z0-9._-]+$|"
                      r"^(?:[A-Za-z0-9._+-]+@)?\[[0-9A-Fa-f:.]+\]$")


def parse_source(text: str) -> Source:
    """``[user@]host``, ``[user@]host:PATH`` or a local file.  An existing
    local path always wins; anything with a ``/`` before any ``:`` is a
    local path."""
    if not text or not text.strip():
        raise OperatorError("no source given")
    if os.path.exists(text):
        if os.path.isdir(text) and not os.path.isfile(
                os.path.join(text, TOC_FILE)):
            raise OperatorError(f"{text} is a directory but not a "
                                f"directory-format dump (no {TOC_FILE})")
        return Source(Source.LOCAL_FILE, path=text)
    host, colon, path = text.partition(":")
    if colon and "/" not in host and not host.startswith("["):
        _check_host(host, text)
        if not path:
            raise OperatorError(f"{text}: no file path after the colon")
        return Source(Source.REMOTE_FILE, host=host, path=path)
    if "/" in text or text.startswith("."):
        raise OperatorError(f"{text}: no such file")
    _check_host(text, text)
    return Source(Source.REMOTE_DATABASE, host=text)


def _check_host(host: str, text: str) -> None:
    if host.startswith("-") or not _HOST_RE.match(host):
        raise OperatorError(f"{text}: not a file and not [user@]host or "
                            "[user@]host:PATH")


@dataclass
class SshSettings:
    """How to reach the remote host.  Anything not given here comes from
    the operator's ssh config; host key checking always stays on."""
    port: int | None = None
    identity_file: str | None = None
    options: list[str] = field(default_factory=list)   # ssh -o values
    config_file: str | None = None                     # ssh -F

    def check(self) -> None:
        if self.identity_file:
            self.identity_file = os.path.expanduser(self.identity_file)
        if self.config_file:
            self.config_file = os.path.expanduser(self.config_file)
        for option in self.options:
            key, _, value = option.strip().replace("=", " ", 1).partition(" ")
            if not key or not value.strip():
                raise OperatorError(f"--ssh-option {option!r}: give it as "
                                    "Key=Value (an ssh -o option)")
            if (key.lower() == "stricthostkeychecking"
                    and value.strip().lower() in ("no", "off", "accept-new")):
                raise OperatorError(
                    f"--ssh-option {option}: host key checking stays on; add "
                    "the host's key to known_hosts (ssh-keyscan, then check "
                    "its fingerprint) instead")
        if self.identity_file and not os.path.isfile(self.identity_file):
            raise OperatorError(f"identity file {self.identity_file} does "
                                "not exist")
        if self.config_file and not os.path.isfile(self.config_file):
            raise OperatorError(f"ssh config {self.config_file} does not "
                                "exist")

    def command(self, host: str, remote_command: str) -> list[str]:
        """``ssh`` with our options; ``remote_command`` is the one string the
        remote shell parses, built by the caller with ``shlex.quote``."""
        args = ["ssh"]
        if self.config_file:
            args += ["-F", self.config_file]
        # ssh takes the first value given for an option: ours go first so
        # that no config file can turn host key checking off.
        for option in SSH_BASE_OPTIONS:
            args += ["-o", option]
        for option in self.options:
            args += ["-o", option]
        if self.port:
            args += ["-p", str(self.port)]
        if self.identity_file:
            args += ["-i", self.identity_file]
        return [*args, "--", host, remote_command]


@dataclass
class ImportOptions:
    remote_db: str = DEFAULT_REMOTE_DB
    remote_pg_dump: str = DEFAULT_REMOTE_PG_DUMP
    keep_dump: str | None = None
    jobs: int = DEFAULT_JOBS
    # The remote pg_dump's -Z; None: zstd on the wire when both hosts have
    # it, else -Z DEFAULT_COMPRESSION.
    compression: int | None = None
    remote_format: str = DEFAULT_REMOTE_FORMAT  # one of REMOTE_FORMATS
    # Where the remote host writes the directory dump (its $TMPDIR or /tmp
    # when None); it is removed when the transfer ends, however it ends.
    remote_tmpdir: str | None = None
    replace: bool = False
    drop_old: bool = False
    admin_url: str | None = None
    ssh: SshSettings = field(default_factory=SshSettings)
    # Called with the staging database's URL once it is loaded and
    # verified, before the swap: work done there (``migrate --from``) lands
    # with the swap or is dropped with the staging database.
    before_swap: Callable[[str], None] | None = None


@dataclass
class ImportResult:
    database: str
    size_bytes: int
    size_pretty: str
    row_counts: dict[str, int]
    source: str
    dump_format: str
    bytes_transferred: int
    backup_database: str | None
    replaced_empty: bool
    phases: list[tuple[str, float]]
    kept_dump: str | None = None

    def summary_lines(self) -> list[str]:
        lines = [f"imported {self.source} into database {self.database} "
                 f"({self.size_pretty})"]
        if self.backup_database:
            lines.append(f"the previous database is kept as "
                         f"{self.backup_database}")
        if self.kept_dump:
            lines.append(f"dump kept at {self.kept_dump}")
        lines.append("rows: " + ", ".join(
            f"{name} {count}" for name, count in self.row_counts.items()))
        lines.append("phases: " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in self.phases))
        return lines


# --------------------------------------------------------------------------
# Small helpers

def pg_program(name: str) -> str:
    """A PostgreSQL client program: from $DATAGOVUK_PG_BIN when set, else
    the one on PATH (Debian's wrapper picks the newest installed)."""
    directory = os.environ.get("DATAGOVUK_PG_BIN")
    if directory and os.path.exists(os.path.join(directory, name)):
        return os.path.join(directory, name)
    found = shutil.which(name)
    if not found:
        raise OperatorError(f"{name} is not installed (Debian: "
                            "postgresql-client)")
    return found


def _pipe_without_buffer(handle) -> bool:
    """Whether ``os.splice`` may move data from or to ``handle``: a pipe
    opened unbuffered (a child's stdin or stdout with bufsize=0), so that no
    byte waits in a Python buffer."""
    try:
        return (hasattr(os, "splice") and isinstance(handle, io.FileIO)
                and stat.S_ISFIFO(os.fstat(handle.fileno()).st_mode))
    except (OSError, ValueError):
        return False


def local_zstd() -> str | None:
    """zstd here, if installed (Debian: zstd); without it the remote
    pg_dump compresses."""
    return shutil.which(ZSTD)


def remote_zstd_command() -> str:
    """The remote host's zstd compressing, as a shell command."""
    return " ".join([shlex.quote(ZSTD), *ZSTD_COMPRESS_OPTIONS])


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else \
                f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def parse_version(text: str) -> tuple[int, ...] | None:
    """The major version of ``pg_dump (PostgreSQL) 15.20 (Debian ...)``:
    (15,), or (9, 6) for the 9.x series."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        return (major, int(match.group(2)))
    return (major,)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def meaningful_line(text: str | bytes) -> str:
    """The line of a program's stderr that says what went wrong."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(NOISE_PREFIXES)]
    for line in lines:
        if re.search(r"error|fatal|denied|refused|no such|not found|"
                     r"could not|cannot|timed out|closed|broken pipe|"
                     r"verification failed", line, re.IGNORECASE):
            return line
    return lines[0] if lines else ""


def _identifier_name(base: str, suffix: str) -> str:
    """``base + suffix`` cut to PostgreSQL's 63-byte name limit."""
    room = 63 - len(suffix.encode())
    cut = base.encode()[:room].decode("utf-8", "ignore")
    return cut + suffix


def staging_name(target: str, pid: int | None = None) -> str:
    return _identifier_name(target, f"__import_{pid or os.getpid()}")


def backup_name(target: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
    return _identifier_name(target, f"__before_import_{stamp}")


def extension_package(name: str, server_major: int) -> str:
    pattern = EXTENSION_PACKAGES.get(name)
    if pattern:
        return pattern.format(major=server_major)
    return f"postgresql-{server_major}-{name.replace('_', '-')} (if packaged)"


class Interrupted(KeyboardInterrupt):
    """Raised from our SIGTERM handler, so that a ``kill`` cleans up like
    Ctrl-C does."""


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM raises (like SIGINT does) while an import runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored():
    """Cleanup runs to the end even when the operator presses Ctrl-C
    again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _StderrCollector(threading.Thread):
    """Reads a child's stderr so it can never block on a full pipe; keeps
    the first 64 KiB."""

    LIMIT = 64 << 10

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.data = bytearray()

    def run(self):
        try:
            for chunk in iter(lambda: self.stream.read(8192), b""):
                if len(self.data) < self.LIMIT:
                    self.data.extend(chunk[:self.LIMIT - len(self.data)])
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        self.join(timeout=5)
        return self.data.decode("utf-8", "replace")


class _Child:
    """A child process whose stderr is collected and which we may kill."""

    def __init__(self, name: str, args: list[str], env: dict | None = None,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        self.name = name
        self.killed = False
        # Processes reading this one's output (zstd -d), stopped with it.
        self.linked: list[_Child] = []
        # Unbuffered pipes: nothing is left in a Python buffer to be
        # flushed (and fail) into a dead process at exit.
        self.process = subprocess.Popen(args, env=env, stdin=stdin,
                                        stdout=stdout, stderr=subprocess.PIPE,
                                        bufsize=0)
        self.stderr = _StderrCollector(self.process.stderr)
        self.stderr.start()

    def wait(self) -> int:
        return self.process.wait()

    def kill(self) -> None:
        # This one first: stopping a reader of its output first could make
        # it fail on its own (ssh on a closed pipe) and read as the cause.
        if self.process.poll() is None:
            self.killed = True
            self.process.kill()
        for child in self.linked:
            child.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=10)

    def error_line(self) -> str:
        return meaningful_line(self.stderr.text())


class _Progress:
    def __init__(self, echo: Echo, label: str):
        self.echo = echo
        self.label = label
        self.started = time.monotonic()
        self.last = self.started
        self.count = 0

    def add(self, size: int) -> None:
        self.count += size
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.report()

    def report(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.echo(f"{self.label}: {human_bytes(self.count)} "
                  f"{'in' if final else 'after'} {elapsed:.1f} s "
                  f"({human_bytes(self.count / elapsed)}/s)")


# --------------------------------------------------------------------------
# Plain SQL dumps

_COPY_START = re.compile(rb"^COPY .* FROM stdin;\s*$")
_DROPPED_STATEMENT = re.compile(
    rb"^(ALTER [A-Z ]+ .* OWNER TO .*;"
    rb"|GRANT .*;"
    rb"|REVOKE .*;"
    rb"|SET SESSION AUTHORIZATION .*;"
    rb"|RESET SESSION AUTHORIZATION;"
    rb"|ALTER DEFAULT PRIVILEGES .*;"
    rb"|COMMENT ON EXTENSION .*;)\s*$")
_CREATE_EXTENSION = re.compile(
    rb'^CREATE EXTENSION (?:IF NOT EXISTS )?"?([A-Za-z0-9_\-]+)"?')
_CONNECT = re.compile(rb"^\\(?:connect|c)\b")


class PlainDumpFilter:
    """Drops owner and privilege statements from a plain pg_dump stream,
    line by line outside COPY data, and reports the extensions it needs."""

    def __init__(self, on_extension: Callable[[str], None]):
        self.on_extension = on_extension
        self.pending = b""
        self.in_copy = False
        self.dropped = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        return self._filter(data[:cut])

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        return self._filter(rest)

    def _filter(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = []
        for line in data.splitlines(keepends=True):
            if self.in_copy:
                if line.rstrip(b"\r\n") == b"\\.":
                    self.in_copy = False
                out.append(line)
                continue
            if _COPY_START.match(line):
                self.in_copy = True
            elif _DROPPED_STATEMENT.match(line):
                self.dropped += 1
                continue
            elif _CONNECT.match(line):
                raise OperatorError(
                    "the plain dump switches database (\\connect: made with "
                    "pg_dump -C or pg_dumpall); dump the one database with "
                    "pg_dump -Fc instead")
            else:
                match = _CREATE_EXTENSION.match(line)
                if match:
                    self.on_extension(match.group(1).decode())
            out.append(line)
        return b"".join(out)


def detect_format(head: bytes) -> str:
    """``custom`` or ``plain`` from the first bytes of a dump; otherwise an
    OperatorError saying what it is."""
    if head.startswith(CUSTOM_MAGIC):
        return "custom"
    if not head:
        raise OperatorError("the dump is empty")
    if head.startswith(b"\x1f\x8b"):
        raise OperatorError("the dump is gzip-compressed: decompress it "
                            "first (gunzip), or dump with pg_dump -Fc")
    if len(head) > 262 and head[257:262] == b"ustar":
        raise OperatorError("the dump is a tar-format archive: not "
                            "supported; dump with pg_dump -Fc")
    if b"\x00" not in head[:65536] and PLAIN_MARKER in head[:65536]:
        return "plain"
    raise OperatorError("not a PostgreSQL dump (neither custom format, "
                        "which starts with PGDMP, nor plain SQL from pg_dump)")


# --------------------------------------------------------------------------
# The database side

def _maintenance_url(url) -> str:
    return db.with_database(url, "postgres")


def _connect(url, what: str):
    try:
        conn = db.connect(url, connect_timeout=15)
    except psycopg2.Error as error:
        raise OperatorError(f"cannot connect to {what} "
                            f"({db.safe_url(url)}): {db.first_line(error)}")
    conn.autocommit = True
    return conn


def _query(url, what: str, statement, params=None) -> list[tuple]:
    conn = _connect(url, what)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    except psycopg2.Error as error:
        raise OperatorError(f"{what}: {db.first_line(error)}")
    finally:
        conn.close()


@dataclass
class TargetState:
    exists: bool
    tables: int = 0
    sessions: int = 0
    applications: str = ""

    @property
    def empty(self) -> bool:
        return self.tables == 0


def other_sessions(maintenance_url, database: str,
                   settle: float = 3.0) -> tuple[int, str]:
    """Client sessions on ``database`` (autovacuum workers do not count:
    PostgreSQL stops them itself for a rename).  Sessions that are just
    closing get ``settle`` seconds to go away."""
    deadline = time.monotonic() + settle
    while True:
        rows = _query(maintenance_url, "the database server",
                      "SELECT count(*), coalesce(string_agg(DISTINCT "
                      "coalesce(nullif(application_name, ''), 'unnamed'), "
                      "', '), '') FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid() "
                      "AND backend_type = 'client backend'", (database,))
        count, applications = rows[0]
        if not count or time.monotonic() >= deadline:
            return count, applications
        time.sleep(0.2)


def database_exists(maintenance_url, database: str) -> bool:
    return bool(_query(maintenance_url, "the database server",
                       "SELECT 1 FROM pg_database WHERE datname = %s",
                       (database,)))


def inspect_target(url) -> TargetState:
    url = db.parse(url)
    maintenance = _maintenance_url(url)
    if not database_exists(maintenance, url.database):
        return TargetState(exists=False)
    tables = _query(url, f"the database {url.database}",
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.relkind IN "
                    "('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN "
                    "('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%%' "
                    "AND n.nspname NOT LIKE 'pg_temp%%'")[0][0]
    sessions, applications = other_sessions(maintenance, url.database)
    return TargetState(True, tables, sessions, applications)


def can_create_databases(url) -> bool:
    return _query(_maintenance_url(url), "the database server",
                  "SELECT rolcreatedb OR rolsuper FROM pg_roles "
                  "WHERE rolname = current_user")[0][0]


def server_major(url) -> int:
    return int(_query(_maintenance_url(url), "the database server",
                      "SHOW server_version_num")[0][0]) // 10000


def _sessions_refusal(database: str, count: int, applications: str) -> str:
    return (f"{count} other session(s) are connected to the database "
            f"{database} ({applications}); stop the site and its workers "
            "(or wait for them) and try again")


def _execute(url, what: str, statement) -> None:
    _query(url, what, statement)


# --------------------------------------------------------------------------
# The import

class _Import:
    def __init__(self, source: Source, target_url, options: ImportOptions,
                 echo: Echo):
        self.source = source
        self.options = options
        self.echo = echo
        self.target_url = db.parse(target_url)
        self.target = self.target_url.database
        self.maintenance = _maintenance_url(self.target_url)
        self.staging = staging_name(self.target)
        self.staging_url = db.with_database(self.target_url, self.staging)
        self.staging_created = False
        self.lock_connection = None
        self.children: list[_Child] = []
        self.work: workdir.WorkDir | None = None
        self.phases: list[tuple[str, float]] = []
        self.bytes_transferred = 0
        self.dump_format = ""
        self.kept_dump: str | None = None
        self.keep_dump_complete = False
        self.available_extensions: set[str] = set()
        self.created_extensions: set[str] = set()
        self.admin_url = options.admin_url
        self.server_major = 0
        self.remote_version: tuple[int, ...] | None = None
        self.remote_zstd = False
        self.zstd_program = local_zstd()
        # Set when the CKAN user may not create or rename databases.
        self.ddl_admin_url = None

    # -- phases ------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.monotonic()
        self.echo(f"{name}...")
        yield
        seconds = time.monotonic() - started
        self.phases.append((name, seconds))
        self.echo(f"{name}: done in {seconds:.1f} s")

    def run(self) -> ImportResult:
        with self.phase("checks"):
            # The ssh round trip for the remote version runs while the
            # target is inspected.
            remote_version = (self.start_version_check()
                              if self.source.kind == Source.REMOTE_DATABASE
                              else None)
            try:
                state = self.check_target()
                self.remove_abandoned_work_dirs()
                if remote_version is not None:
                    self.check_versions(remote_version)
            finally:
                if remote_version is not None \
                        and remote_version.poll() is None:
                    remote_version.kill()
                    remote_version.wait()
        try:
            result = self.load_verify_swap(state)
        except BaseException:
            with _signals_ignored():
                self.cleanup(failed=True)
            raise
        with _signals_ignored():
            self.cleanup(failed=False)
        return result

    @property
    def directory_route(self) -> bool:
        return (self.source.kind == Source.REMOTE_DATABASE
                and self.options.remote_format == "directory"
                and self.options.jobs > 1
                and (self.remote_version is None
                     or self.remote_version >= PARALLEL_PG_DUMP))

    @property
    def zlib_level(self) -> int:
        return (DEFAULT_COMPRESSION if self.options.compression is None
                else self.options.compression)

    @property
    def zstd_wanted(self) -> bool:
        """Whether zstd is to carry the stream if both hosts have it: a
        custom dump from [user@]host, no level asked for, and no
        --keep-dump (which keeps what arrives, and a pg_dump -Z1 file is
        what a kept dump should be)."""
        return (self.source.kind == Source.REMOTE_DATABASE
                and not self.directory_route
                and self.options.compression is None
                and not self.options.keep_dump)

    @property
    def zstd_transport(self) -> bool:
        """Whether the stream goes compressed by zstd rather than by the
        remote pg_dump."""
        return (self.zstd_wanted and self.remote_zstd
                and self.zstd_program is not None)

    def load_verify_swap(self, state: TargetState) -> ImportResult:
        # The remote host dumps for a while before it sends anything: the
        # staging database is made meanwhile.
        remote_dump = self.start_remote_command() if self.directory_route \
            else None
        self.create_staging()
        self.load(remote_dump)
        with self.phase("verify"):
            counts, size, pretty = self.verify()
        if self.options.before_swap:
            self.options.before_swap(
                self.staging_url.render_as_string(hide_password=False))
            counts, size, pretty = self.verify()
        self.hold_staging_claim()
        # Not interruptible: the operator is told exactly what happened.
        with self.phase("swap"), _signals_ignored():
            backup = self.swap(state)
        return ImportResult(
            database=self.target, size_bytes=size, size_pretty=pretty,
            row_counts=counts, source=self.source.describe(
                self.options.remote_db),
            dump_format=self.dump_format,
            bytes_transferred=self.bytes_transferred,
            backup_database=backup if backup and not state.empty
            and not self.options.drop_old else None,
            replaced_empty=state.exists and state.empty,
            phases=self.phases, kept_dump=self.kept_dump)

    # -- checks ------------------------------------------------------------

    def check_target(self) -> TargetState:
        options = self.options
        if options.jobs < 1:
            raise OperatorError("--jobs must be at least 1")
        if options.drop_old and not options.replace:
            raise OperatorError("--drop-old only makes sense with --replace")
        if options.keep_dump and not self.source.is_remote:
            raise OperatorError("--keep-dump keeps a copy of a remote "
                                "source; the source is already a local file")
        if options.keep_dump:
            self.check_keep_dump_path(options.keep_dump,
                                      directory=self.directory_route)
        if options.compression is not None \
                and self.source.kind != Source.REMOTE_DATABASE:
            raise OperatorError(
                "--compress sets the remote pg_dump's compression, which "
                "only an import from [user@]host runs")
        if options.remote_format not in REMOTE_FORMATS:
            raise OperatorError(f"--remote-format must be one of "
                                f"{', '.join(REMOTE_FORMATS)}")
        if options.remote_format != DEFAULT_REMOTE_FORMAT \
                and self.source.kind != Source.REMOTE_DATABASE:
            raise OperatorError(
                "--remote-format sets how the remote pg_dump dumps, which "
                "only an import from [user@]host runs")
        if options.remote_tmpdir is not None and not self.directory_route:
            raise OperatorError(
                "--remote-tmpdir is where the remote host writes a "
                "directory-format dump, which only an import from "
                "[user@]host with --remote-format directory and --jobs 2 "
                "or more makes")
        if re.search(r"password\s*=|://[^/@]*:[^/@]*@", options.remote_db,
                     re.IGNORECASE):
            raise OperatorError(
                "--remote-db must not hold a password (it would be on the "
                "remote command line): use ~/.pgpass on the remote host")
        if self.source.is_remote:
            options.ssh.check()
        state = inspect_target(self.target_url)
        where = f"the database {self.target} ({db.safe_url(self.target_url)})"
        if state.exists and not state.empty and not options.replace:
            raise OperatorError(
                f"{where} already has {state.tables} tables; give --replace "
                "to replace it (the old one is kept under a backup name "
                "unless --drop-old)")
        if state.sessions:
            raise OperatorError(_sessions_refusal(
                self.target, state.sessions, state.applications))
        if not can_create_databases(self.target_url):
            if not self.admin_url:
                raise OperatorError(
                    f"the database user {self.target_url.username} may not "
                    "create databases (no CREATEDB) and no admin URL was "
                    "given (--admin-url-env VAR, VAR holding a superuser "
                    "URL)")
            _query(_maintenance_url(self.admin_url),
                   "the admin connection", "SELECT 1")
            self.ddl_admin_url = db.parse(self.admin_url)
        self.server_major = server_major(self.target_url)
        self.available_extensions = {row[0] for row in _query(
            self.maintenance, "the database server",
            "SELECT name FROM pg_available_extensions")}
        self.echo(f"target: database {self.target} on "
                  f"{db.safe_url(self.target_url)} ("
                  + ("does not exist yet" if not state.exists else
                     "empty" if state.empty else
                     f"{state.tables} tables, will be replaced") + ")")
        return state

    @staticmethod
    def check_keep_dump_path(path: str, directory: bool = False) -> None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OperatorError(f"--keep-dump {path}: directory {parent} "
                                "does not exist")
        if directory and os.path.lexists(path):
            raise OperatorError(
                f"--keep-dump {path} already exists: the directory-format "
                "dump is kept in a new directory (without --remote-format "
                "directory a custom-format file is kept)")
        if os.path.isdir(path):
            raise OperatorError(f"--keep-dump {path} is a directory")

    def start_version_check(self) -> subprocess.Popen:
        """One ssh round trip: the remote pg_dump's version, and whether
        the remote host has zstd."""
        self.options.ssh.check()
        script = (f"{shlex.quote(self.options.remote_pg_dump)} --version && "
                  f"{{ {remote_zstd_command()} </dev/null >/dev/null 2>&1 && "
                  f"echo {shlex.quote(REMOTE_ZSTD_MARKER)} || :; }}")
        command = self.ssh_command(f"sh -c {shlex.quote(script)}")
        return subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def check_versions(self, remote: subprocess.Popen) -> None:
        local = subprocess.run([pg_program("pg_restore"), "--version"],
                               capture_output=True, text=True)
        local_version = parse_version(local.stdout)
        try:
            stdout, stderr = remote.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise OperatorError(f"ssh to {self.source.host} did not answer "
                                "within 120 s")
        if remote.returncode == 255:
            raise OperatorError(f"cannot ssh to {self.source.host}: "
                                f"{meaningful_line(stderr) or 'ssh failed'}")
        remote_version = parse_version(stdout)
        if remote.returncode != 0 or remote_version is None:
            detail = meaningful_line(stderr) or stdout.strip()
            raise OperatorError(
                f"cannot run {self.options.remote_pg_dump} on "
                f"{self.source.host}: {detail or 'no version reported'} "
                "(give its path with --remote-pg-dump)")
        if local_version is None:
            raise OperatorError(f"cannot tell the version of the local "
                                f"pg_restore: {local.stdout.strip()}")
        self.echo(f"versions: remote pg_dump {version_text(remote_version)}, "
                  f"local pg_restore {version_text(local_version)}")
        self.remote_version = remote_version
        self.remote_zstd = REMOTE_ZSTD_MARKER in stdout
        if self.options.remote_format == "directory" \
                and self.options.jobs > 1 and not self.directory_route:
            self.echo(f"the remote pg_dump {version_text(remote_version)} "
                      "cannot dump in parallel (9.3 and later can): it "
                      "sends a custom-format dump instead")
        if local_version < remote_version:
            raise OperatorError(
                f"the remote pg_dump is version {version_text(remote_version)}"
                f" but the local pg_restore is {version_text(local_version)}: "
                "pg_restore cannot read dumps from a newer pg_dump; install "
                f"postgresql-client-{remote_version[0]} here")

    def ssh_command(self, remote_command: str) -> list[str]:
        return self.options.ssh.command(self.source.host, remote_command)

    # -- staging -----------------------------------------------------------

    def create_staging(self) -> None:
        self.claim_staging()
        if database_exists(self.maintenance, self.staging):
            # Left by an earlier run of a process with our pid (killed -9).
            self.drop_database(self.staging)
        try:
            db.create_database(self.staging_url, self.ddl_admin_url)
        except psycopg2.Error as error:
            raise OperatorError(f"cannot create the staging database "
                                f"{self.staging}: {db.first_line(error)}")
        self.staging_created = True
        self.echo(f"staging database: {self.staging}")

    def claim_staging(self) -> None:
        """Hold a session advisory lock named after our staging database for
        as long as this import runs, and drop the staging databases of
        imports into the same target whose lock nobody holds: those were
        killed outright (kill -9, the OOM killer) and could not clean up."""
        self.lock_connection = _connect(self.maintenance, "the database "
                                        "server")
        self.lock_connection.autocommit = True
        # "<target>__import_" as staging_name() cuts it for the longest pid.
        prefix = _identifier_name(self.target, "__import_9999999")[:-7]
        with self.lock_connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))",
                        (self.staging,))
            cur.execute("SELECT datname FROM pg_database WHERE "
                        "left(datname, %s) = %s AND datname <> %s",
                        (len(prefix), prefix, self.staging))
            for (name,) in cur.fetchall():
                cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                            (name,))
                if not cur.fetchone()[0]:
                    continue        # another import is running into it
                try:
                    self.drop_database(name)
                    self.echo(f"dropped {name}, left by an import that was "
                              "killed")
                finally:
                    cur.execute("SELECT pg_advisory_unlock(hashtext(%s))",
                                (name,))

    def hold_staging_claim(self) -> None:
        """Take the staging database's lock again when the session holding
        it is gone (the server restarted while nothing else of ours was
        connected, as during the transfer), so that an import into the same
        target does not drop it as left by a killed one; refuse to go on
        when another import already holds it."""
        if self.lock_connection is None:
            return
        try:
            with self.lock_connection.cursor() as cur:
                cur.execute("SELECT 1")
            return
        except psycopg2.Error:
            with contextlib.suppress(psycopg2.Error):
                self.lock_connection.close()
        self.lock_connection = _connect(self.maintenance,
                                        "the database server")
        self.lock_connection.autocommit = True
        with self.lock_connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                        (self.staging,))
            taken = cur.fetchone()[0]
        if not taken or not database_exists(self.maintenance, self.staging):
            raise OperatorError(
                f"the session holding the staging database {self.staging} "
                "was lost (did the server restart?) and another import into "
                f"{self.target} has taken it over or dropped it; nothing was "
                "imported")
        self.echo(f"the session holding the staging database {self.staging} "
                  "was lost (did the server restart?): it is held again")

    def release_staging(self) -> None:
        if self.lock_connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self.lock_connection.close()
            self.lock_connection = None

    def drop_staging_patiently(self, seconds: float = 60) -> None:
        """Drop the staging database, retrying while the server cannot be
        reached (a restart is what may have broken the import)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.drop_database(self.staging)
                return
            except OperatorError as error:
                if time.monotonic() >= deadline:
                    self.echo(f"could not drop the staging database "
                              f"{self.staging}: {error}; drop it by hand")
                    return
                time.sleep(1)

    def drop_database(self, name: str) -> None:
        _execute(_maintenance_url(self.ddl_admin_url or self.target_url), f"dropping the database {name}",
                 sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                     sql.Identifier(name)))

    def ensure_extension(self, name: str) -> None:
        """Refuse a dump that needs an extension this server lacks, naming
        the package; create the others up front, as the admin when the
        CKAN user may not."""
        if name in self.created_extensions or name == "plpgsql":
            return
        if name not in self.available_extensions:
            raise OperatorError(
                f"the dump needs the PostgreSQL extension {name}, which "
                "this server does not have: install "
                f"{extension_package(name, self.server_major)} on the "
                "database server")
        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
            sql.Identifier(name))
        conn = _connect(self.staging_url, "the staging database")
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        except psycopg2.errors.InsufficientPrivilege as error:
            if not self.admin_url:
                raise OperatorError(
                    f"the extension {name} needs a superuser to create it "
                    f"({db.first_line(error)}): give an admin URL with "
                    "--admin-url-env")
            _execute(db.with_database(self.admin_url, self.staging),
                     f"creating the extension {name}", statement)
        except psycopg2.Error as error:
            raise OperatorError(f"cannot create the extension {name}: "
                                f"{db.first_line(error)}")
        finally:
            conn.close()
        self.created_extensions.add(name)

    # -- load --------------------------------------------------------------

    def restore_env(self) -> dict[str, str]:
        env = db.libpq_env(self.staging_url)
        env.setdefault("PGAPPNAME", "datagovuk-import")
        env["PGCONNECT_TIMEOUT"] = "15"
        return env

    def restore_args(self, list_file: str | None, jobs: int = 1) -> list[str]:
        args = [pg_program("pg_restore"), "--no-owner", "--no-privileges",
                "--no-tablespaces", "--no-publications", "--no-subscriptions",
                "--no-security-labels", "--exit-on-error",
                "-d", self.staging]
        if list_file:
            args += ["-L", list_file]
        if jobs > 1:
            args += ["-j", str(jobs)]
        return args

    def psql_args(self) -> list[str]:
        return [pg_program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "--single-transaction", "-d", self.staging, "-f", "-"]

    def remote_command(self) -> str:
        """The one command string the remote shell runs, quoted safely."""
        if self.source.kind != Source.REMOTE_DATABASE:
            return f"cat -- {shlex.quote(_remote_path(self.source.path))}"
        pg_dump = shlex.quote(self.options.remote_pg_dump)
        database = shlex.quote(self.options.remote_db)
        if not self.directory_route:
            if not self.zstd_transport:
                return (f"{pg_dump} -Fc -Z{self.zlib_level} -O -x -w "
                        f"-d {database}")
            # sh has no pipefail: pg_dump's status comes out on fd 4 so
            # that the remote command fails when pg_dump does.
            dump = f"{pg_dump} -Fc -Z0 -O -x -w -d {database}"
            script = (f"exec 3>&1; status=$( {{ {{ {dump}; echo $? >&4; }} "
                      f"| {remote_zstd_command()} >&3; }} 4>&1 ); "
                      "exit ${status:-1}")
            return f"sh -c {shlex.quote(script)}"
        parent = (_double_quoted(self.options.remote_tmpdir)
                  if self.options.remote_tmpdir else '"${TMPDIR:-/tmp}"')
        # sh whatever the login shell is.  pg_dump runs in the background
        # with -v; each table's data file is sent as a tar archive of its
        # own once pg_dump's log says "finished item N TABLE DATA", and its
        # name noted in $work/sent, so the transfer overlaps the dump; the
        # rest (toc.dat last) follows when pg_dump has succeeded.  Nothing
        # is deleted before then: pg_dump 10+ opens every file again at the
        # end to fsync it (--no-sync skips that, but older ones have no
        # such option; --plan, which runs before the version is known,
        # shows the command without it).  Meanwhile a zero block (which
        # tar -x --ignore-zeros skips) goes out every 0.2 s, so that a
        # closed connection ends the script at once.  The EXIT trap stops
        # pg_dump, waits for the job that notes its status (which would
        # otherwise write it into a directory being removed), and removes
        # the dump however the script ends (an error, or tar losing its
        # reader when the import is stopped); the signal traps turn a
        # signal into an exit so that it runs.  On failure,
        # pg_dump's log goes to stderr without its progress lines.  No
        # single quotes inside, so that --plan shows it quoted once.
        no_sync = ("--no-sync " if self.remote_version
                   and self.remote_version >= NO_SYNC_PG_DUMP else "")
        script = (
            "set -e; umask 077; "
            f"work=$(mktemp -d {parent}/datagovuk-dump.XXXXXX); "
            'trap "kill \\$(cat \\"$work/pid\\" 2>/dev/null) 2>/dev/null '
            '|| :; wait || :; rm -rf \\"$work\\"" EXIT; '
            'trap "exit 129" HUP; trap "exit 130" INT; trap "exit 143" TERM; '
            ': > "$work/log"; : > "$work/sent"; sent=" "; '
            f"{{ {_double_quoted(self.options.remote_pg_dump)} -Fd "
            f"-j {self.options.jobs} -Z{self.zlib_level} -O -x -w -v "
            f"{no_sync}"
            f'-f "$work/dump" -d {_double_quoted(self.options.remote_db)} '
            '2> "$work/log" & echo $! > "$work/pid"; status=0; '
            'wait $! || status=$?; echo $status > "$work/status"; } & '
            "send_finished() { "
            "for item in $(sed -n "
            '"s/.*finished item \\([0-9][0-9]*\\) TABLE DATA .*/\\1/p" '
            '"$work/log"); do for file in "$work/dump/$item".dat*; do '
            'name=${file##*/}; case "$sent" in *" $name "*) continue;; esac; '
            'if [ -f "$file" ]; then (cd "$work/dump" && tar -cf - "$name"); '
            'sent="$sent$name "; echo "$name" >> "$work/sent"; fi; '
            "done; done; }; "
            'while [ ! -s "$work/status" ]; do send_finished; '
            "dd if=/dev/zero bs=512 count=1 2>/dev/null; "
            "sleep 0.2 2>/dev/null || sleep 1; done; "
            'status=$(cat "$work/status"); '
            'if [ "$status" != 0 ]; then grep -v -E '
            '"finished item|dumping contents of table|^pg_dump: (reading|'
            'saving|finding|flagging|identifying|last built-in)" '
            '"$work/log" >&2 || :; exit "$status"; fi; '
            'send_finished; cd "$work/dump"; for name in *; do '
            'case "$sent" in *" $name "*) ;; *) [ "$name" = toc.dat ] || '
            'tar -cf - "$name";; esac; done; tar -cf - toc.dat')
        return f"sh -c {shlex.quote(script)}"

    def plan(self) -> list[str]:
        """The programs the import would run, as shell lines; libpq reads
        the connection (password included) from the environment."""
        quoted = lambda args: " ".join(shlex.quote(arg) for arg in args)
        env = (f"PGHOST={self.target_url.host} PGPORT={self.target_url.port} "
               f"PGUSER={self.target_url.username}"
               + (" PGPASSWORD=***" if self.target_url.password else ""))
        lines = [f"CREATE DATABASE {self.staging} (staging, as "
                 f"{self.target_url.username})"]
        restore = quoted(self.restore_args(None, self.options.jobs))
        if self.directory_route:
            fetch = quoted(self.ssh_command(self.remote_command()))
            spool = shlex.quote(self.options.keep_dump or "$TMPDIR/<dump>")
            lines += [f"mkdir {spool}; {fetch} | tar -x --ignore-zeros "
                      f"-f - -C {spool}",
                      f"{env} {restore} {spool}"]
        elif self.source.is_remote:
            fetch = quoted(self.ssh_command(self.remote_command()))
            tee = (f" | tee {shlex.quote(self.options.keep_dump)}"
                   if self.options.keep_dump else "")
            if self.options.jobs > 1:
                stream = quoted(self.restore_args(None)
                                + ["--section=pre-data", "--section=data"])
                lines += [f"{fetch}{tee} | {env} {stream}   "
                          "(or psql for a plain SQL dump)",
                          f"{env} {restore} --section=post-data "
                          "$TMPDIR/<the dump's head: its table of contents>"]
            else:
                lines.append(f"{fetch}{tee} | {env} {restore}   "
                             "(or psql for a plain SQL dump)")
            if self.zstd_wanted:
                lines.append(
                    "if both hosts have zstd: pg_dump -Fc -Z0 ... | "
                    f"{remote_zstd_command()} there and zstd -d here, in "
                    f"place of pg_dump -Z{DEFAULT_COMPRESSION}")
        else:
            lines.append(f"{env} {restore} {shlex.quote(self.source.path)}   "
                         "(or psql -f for a plain SQL dump)")
        lines.append(f"verify that {self.staging} is a CKAN database")
        state = inspect_target(self.target_url)
        rename = f"ALTER DATABASE {self.staging} RENAME TO {self.target}"
        if not state.exists:
            lines.append(f"swap: {rename}")
        elif state.empty:
            lines.append(f"swap: DROP DATABASE {self.target} (empty); {rename}")
        elif not self.options.replace:
            lines.append(f"refuse: {self.target} has {state.tables} tables "
                         "and --replace was not given")
        else:
            old = ("DROP DATABASE " + self.target if self.options.drop_old
                   else f"ALTER DATABASE {self.target} RENAME TO "
                        f"{backup_name(self.target)}")
            lines.append(f"swap: {old}; {rename}")
        return lines

    def load(self, remote_dump: "_Child | None" = None) -> None:
        if remote_dump is not None:
            self.load_remote_directory(remote_dump)
        elif self.source.is_remote:
            reader = self.start_remote_command()
            stream = reader.process.stdout
            if self.zstd_transport:
                decompress = self.start_child(
                    "zstd", [self.zstd_program, "-d", "-q", "-c"],
                    stdin=stream, stdout=subprocess.PIPE)
                # zstd -d holds the pipe now; ssh must see it close if
                # zstd stops.
                stream.close()
                reader.linked.append(decompress)
                stream = decompress.process.stdout
            self.load_stream(stream, reader)
        else:
            self.load_local_file(self.source.path)

    def start_child(self, name: str, args: list[str], **kwargs) -> _Child:
        """A child process that cleanup kills."""
        child = _Child(name, args, **kwargs)
        self.children.append(child)
        return child

    def start_remote_command(self) -> _Child:
        """ssh running ``remote_command()``, its output on a pipe."""
        return self.start_child("ssh", self.ssh_command(self.remote_command()),
                                stdout=subprocess.PIPE)

    def directory_spool(self) -> str:
        """A new directory for the received dump: the --keep-dump one, else
        one in our work directory."""
        path = self.options.keep_dump or os.path.join(self.work_dir(), "dump")
        try:
            os.mkdir(path, 0o700)
        except OSError as error:
            raise OperatorError(f"cannot create {path}: {error.strerror}")
        if self.options.keep_dump:
            self.kept_dump = path
        return path

    def load_remote_directory(self, reader: _Child) -> None:
        """Receive the remote host's directory-format dump as a stream of
        tar archives (one per table's data file, then the rest), unpack it
        here, then ``pg_restore -j N`` it."""
        path = self.directory_spool()
        self.dump_format = "directory"
        self.echo(f"source: {self.source.describe(self.options.remote_db)} "
                  f"(directory format, pg_dump -j {self.options.jobs} "
                  "there, each table sent as soon as it is dumped)")
        with self.phase("remote dump+transfer"):
            stream = reader.process.stdout
            head = self.read_head(stream, reader, 1)
            if not head:
                self.fail_source(reader, nothing_received=True)
            # --ignore-zeros: one archive per data file, then the rest.
            unpack = self.start_child(
                "tar", ["tar", "-x", "--ignore-zeros", "-f", "-", "-C", path,
                        "--no-same-owner"], stdin=subprocess.PIPE)
            try:
                self.pump(stream, reader, head,
                          [(unpack.process.stdin, "tar")], "received")
            except _SinkClosed:
                reader.kill()
            finally:
                with contextlib.suppress(OSError):
                    unpack.process.stdin.close()
            self.fail_source(reader)
            if unpack.wait() != 0:
                raise OperatorError(
                    f"the dump from {self.source.host} could not be unpacked "
                    f"in {path}: {unpack.error_line() or 'tar failed'}")
            if not os.path.isfile(os.path.join(path, TOC_FILE)):
                raise OperatorError(f"the dump is truncated or corrupt: "
                                    f"it has no {TOC_FILE}")
        self.keep_dump_complete = True
        # The transfer is the long stretch with no session of ours but the
        # lock's.
        self.hold_staging_claim()
        with self.phase("restore"):
            self.restore_file(path)

    def load_local_file(self, path: str) -> None:
        if os.path.isdir(path):
            self.dump_format = "directory"
            size = sum(entry.stat().st_size for entry in os.scandir(path)
                       if entry.is_file())
            self.echo(f"source: {path} (directory format, "
                      f"{human_bytes(size)})")
            with self.phase("restore"):
                self.restore_file(path)
            return
        try:
            with open(path, "rb") as handle:
                head = handle.read(65536)
        except OSError as error:
            raise OperatorError(f"cannot read {path}: {error.strerror}")
        self.dump_format = detect_format(head)
        self.echo(f"source: {path} ({self.dump_format} format, "
                  f"{human_bytes(os.path.getsize(path))})")
        if self.dump_format == "custom":
            with self.phase("restore"):
                self.restore_file(path)
        else:
            with self.phase("load"), open(path, "rb") as handle:
                self.stream_plain(handle, None, "read")

    def load_stream(self, stream, reader: _Child) -> None:
        """A remote dump: find its format, then stream it into the load as
        it arrives."""
        head = self.read_head(stream, reader, 65536)
        self.dump_format = self.format_of_stream(head, reader)
        source = f"source: {self.source.describe(self.options.remote_db)}"
        if self.dump_format == "plain":
            self.echo(f"{source} (plain format)")
            with self.phase("transfer+load"):
                self.stream_plain(stream, reader, "received", head)
        elif self.options.jobs > 1:
            self.echo(f"{source} (custom format{self.wire_note()}, "
                      "restored as it arrives; indexes and keys then built "
                      f"with pg_restore -j {self.options.jobs})")
            with self.phase("transfer+restore"):
                toc = self.stream_custom(stream, reader, head,
                                         sections=("pre-data", "data"))
            with self.phase("indexes and keys"):
                self.restore_post_data(toc)
        else:
            self.echo(f"{source} (custom format{self.wire_note()})")
            with self.phase("transfer+restore"):
                self.stream_custom(stream, reader, head)

    def wire_note(self) -> str:
        """How a remote pg_dump's output is compressed on the way, and why
        not by zstd, as ", compressed by ..."; a remote file goes as it
        is."""
        if self.zstd_transport:
            return ", compressed by zstd -1 on the way"
        if self.source.kind != Source.REMOTE_DATABASE:
            return ""
        why = ("" if not self.zstd_wanted
               else "; the remote host has no zstd" if not self.remote_zstd
               else "; zstd is not installed here")
        return f", compressed by pg_dump -Z{self.zlib_level}{why}"

    def read_head(self, stream, reader: _Child | None, size: int,
                  head: bytes = b"") -> bytes:
        data = bytearray(head)
        while len(data) < size:
            chunk = self._read(stream, reader, size - len(data))
            if not chunk:
                break
            data.extend(chunk)
        return bytes(data)

    def _read(self, stream, reader: _Child | None, size: int) -> bytes:
        try:
            return stream.read1(size) if hasattr(stream, "read1") \
                else stream.read(size)
        except OSError as error:
            if reader is not None:
                self.fail_source(reader)
            raise OperatorError(f"cannot read the dump: {error.strerror}")

    def format_of_stream(self, head: bytes, reader: _Child) -> str:
        if not head:
            # Nothing arrived: the remote side failed before sending.
            self.fail_source(reader, nothing_received=True)
        try:
            return detect_format(head)
        except OperatorError:
            reader.kill()
            raise

    def fail_source(self, reader: _Child, nothing_received: bool = False):
        """Raise the remote side's reason when it failed (ssh error,
        remote pg_dump or cat error)."""
        status = reader.wait()
        host = self.source.host
        failed = [child for child in reader.linked
                  if child.wait() != 0 and not child.killed]
        for child in failed:
            if not re.search(r"premature end|end of file",
                             child.error_line()):
                # Not the truncation a failing remote side causes.
                raise OperatorError(
                    f"the compressed dump from {host} cannot be read: "
                    f"{child.error_line() or child.name + ' failed'}")
        if status == 0 and not nothing_received:
            if failed:
                raise OperatorError(f"the compressed dump from {host} is "
                                    "truncated, nothing was imported")
            return
        line = reader.error_line()
        if status == 255:
            raise OperatorError(f"the ssh connection to {host} failed: "
                                f"{line or 'ssh exited with status 255'}")
        if status != 0 and not reader.killed:
            what = ("the remote dump" if self.directory_route
                    else self.options.remote_pg_dump
                    if self.source.kind == Source.REMOTE_DATABASE else "cat")
            raise OperatorError(f"{what} failed on {host}: "
                                f"{line or f'exit status {status}'}")
        if nothing_received:
            raise OperatorError(f"{self.source.describe(self.options.remote_db)}"
                                ": nothing received (empty dump)")

    def open_keep_dump(self):
        if not self.options.keep_dump:
            return None
        try:
            handle = open(self.options.keep_dump, "wb")
        except OSError as error:
            raise OperatorError(f"cannot write {self.options.keep_dump}: "
                                f"{error.strerror}")
        self.kept_dump = self.options.keep_dump
        return handle

    def pump(self, stream, reader: _Child | None, head: bytes,
             sinks: list, verb: str,
             transform: "PlainDumpFilter | None" = None,
             raw_sinks: Iterable = ()) -> None:
        """Copy the dump from ``stream`` to every sink, reporting progress.
        ``raw_sinks`` get the bytes as received (--keep-dump), ``sinks``
        get them after ``transform``."""
        progress = _Progress(self.echo, verb)
        raw_sinks = [sink for sink in raw_sinks if sink is not None]
        splice = (not raw_sinks and transform is None and len(sinks) == 1
                  and _pipe_without_buffer(stream)
                  and _pipe_without_buffer(sinks[0][0]))
        chunk = head
        while True:
            if chunk:
                progress.add(len(chunk))
                for sink in raw_sinks:
                    self._write(sink, chunk, self.options.keep_dump)
                data = transform.feed(chunk) if transform else chunk
                for sink, name in sinks:
                    self._write(sink, data, name)
            if splice:
                self.splice_rest(stream, reader, *sinks[0], progress)
                break
            chunk = self._read(stream, reader, CHUNK_SIZE)
            if not chunk:
                break
        if transform is not None:
            tail = transform.finish()
            for sink, name in sinks:
                self._write(sink, tail, name)
        self.bytes_transferred = progress.count
        progress.report(final=True)

    def splice_rest(self, stream, reader: _Child | None, sink, name: str,
                    progress: _Progress) -> None:
        """The rest of ``stream`` into ``sink``, pipe to pipe inside the
        kernel: most of an import's bytes (0.8 GB at 50,000 datasets once
        zstd -d has decompressed them) then never pass through Python."""
        source, target = stream.fileno(), sink.fileno()
        while True:
            try:
                moved = os.splice(source, target, CHUNK_SIZE)
            except BrokenPipeError:
                raise _SinkClosed(name)
            except OSError as error:
                if reader is not None:
                    self.fail_source(reader)
                raise OperatorError(f"cannot read the dump: {error.strerror}")
            if not moved:
                return
            progress.add(moved)

    def _write(self, sink, data: bytes, name: str) -> None:
        if not data:
            return
        try:
            view = memoryview(data)
            while view:
                # A raw pipe may take part of it (a signal mid-write).
                written = sink.write(view)
                view = view[len(view) if written is None else written:]
        except BrokenPipeError:
            raise _SinkClosed(name)
        except OSError as error:
            raise OperatorError(f"cannot write {name}: {error.strerror}")

    def stream_custom(self, stream, reader: _Child, head: bytes,
                      sections: tuple[str, ...] = ()) -> "_Toc":
        """Stream a custom dump into one ``pg_restore`` (only ``sections``
        of it, if given), after reading its table of contents (held back in
        memory) for the extensions."""
        head, toc = self.peek_toc(stream, reader, head)
        keep = self.open_keep_dump()
        restore = self.start_child(
            "pg_restore", self.restore_args(toc.list_file) + [
                f"--section={section}" for section in sections],
            env=self.restore_env(), stdin=subprocess.PIPE)
        try:
            self.pump(stream, reader, head,
                      [(restore.process.stdin, "pg_restore")],
                      "received (decompressed)" if self.zstd_transport
                      else "received",
                      raw_sinks=[keep])
        except _SinkClosed:
            # pg_restore stopped reading: its error says why.
            reader.kill()
        finally:
            with contextlib.suppress(OSError):
                restore.process.stdin.close()
            if keep:
                self.close_keep(keep)
        self.fail_source(reader)
        self.keep_dump_complete = True
        self.finish_restore(restore)
        return toc

    def restore_post_data(self, toc: "_Toc") -> None:
        """The indexes, keys and the rest of the post-data section, with
        ``pg_restore -j N``.  They need only the table of contents, which a
        custom dump has at its head: the whole dump is never stored here."""
        restore = self.start_child(
            "pg_restore", [*self.restore_args(toc.list_file, self.options.jobs),
                           "--section=post-data", toc.head_file],
            env=self.restore_env())
        self.finish_restore(restore)

    def close_keep(self, keep) -> None:
        try:
            keep.close()
        except OSError as error:
            raise OperatorError(f"cannot write {self.options.keep_dump}: "
                                f"{error.strerror}")

    def peek_toc(self, stream, reader: _Child, head: bytes
                 ) -> tuple[bytes, "_Toc"]:
        """Read just enough of a streamed custom dump for ``pg_restore -l``
        to list its table of contents; that head stays in the work
        directory for the post-data restore."""
        size = max(len(head), 256 << 10)
        path = os.path.join(self.work_dir(), "head.dump")
        while True:
            head = self.read_head(stream, reader, size, head)
            complete = len(head) < size
            with open(path, "wb") as handle:
                handle.write(head)
            listing = subprocess.run([pg_program("pg_restore"), "-l", path],
                                     capture_output=True, text=True)
            if listing.returncode == 0:
                return head, _Toc(path, self.write_toc_list(listing.stdout))
            if complete or size >= TOC_PEEK_LIMIT \
                    or "end of file" not in listing.stderr:
                if not complete:
                    # More is coming that nobody will read.
                    reader.kill()
                self.fail_source(reader)
                raise OperatorError(f"the dump is truncated or corrupt: "
                                    f"{meaningful_line(listing.stderr)}")
            size *= 4

    def write_toc_list(self, listing: str) -> str:
        """Check the extensions in a TOC listing and write the list of
        entries to restore: all but ``COMMENT ON EXTENSION`` (owner only)."""
        kept = []
        for line in listing.splitlines():
            match = re.match(r"^\d+;\s+\d+\s+\d+\s+(.+)$", line)
            if match:
                entry = match.group(1).split()
                if entry[:2] == ["EXTENSION", "-"]:
                    self.ensure_extension(entry[2])
                if entry[:3] == ["COMMENT", "-", "EXTENSION"]:
                    continue
            kept.append(line)
        path = os.path.join(self.work_dir(), "restore.list")
        with open(path, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        return path

    def restore_file(self, path: str) -> None:
        listing = subprocess.run([pg_program("pg_restore"), "-l", path],
                                 capture_output=True, text=True)
        if listing.returncode != 0:
            raise OperatorError(f"the dump is truncated or corrupt: "
                                f"{meaningful_line(listing.stderr)}")
        list_file = self.write_toc_list(listing.stdout)
        restore = self.start_child(
            "pg_restore", [*self.restore_args(list_file, self.options.jobs),
                           path], env=self.restore_env())
        self.finish_restore(restore)

    def finish_restore(self, restore: _Child) -> None:
        status = restore.wait()
        if status != 0:
            line = restore.error_line() or f"exit status {status}"
            if re.search(r"input file|end of file|did not find magic|"
                         r"unsupported version|unrecognized data block|"
                         r"corrupt", line):
                raise OperatorError(f"the dump is truncated or corrupt, "
                                    f"nothing was imported: {line}")
            raise OperatorError(f"pg_restore failed, nothing was imported: "
                                f"{line}")

    def stream_plain(self, stream, reader: _Child | None, verb: str,
                     head: bytes = b"") -> None:
        keep = self.open_keep_dump() if reader is not None else None
        plain_filter = PlainDumpFilter(self.ensure_extension)
        psql = self.start_child("psql", self.psql_args(),
                                env=self.restore_env(), stdin=subprocess.PIPE)
        try:
            self.pump(stream, reader, head, [(psql.process.stdin, "psql")],
                      verb, transform=plain_filter, raw_sinks=[keep])
        except _SinkClosed:
            if reader is not None:
                reader.kill()
        finally:
            with contextlib.suppress(OSError):
                psql.process.stdin.close()
            if keep:
                self.close_keep(keep)
        if reader is not None:
            self.fail_source(reader)
            self.keep_dump_complete = True
        status = psql.wait()
        if status != 0:
            line = psql.error_line()
            raise OperatorError(f"loading the plain SQL dump failed, nothing "
                                f"was imported: {line or f'psql exit {status}'}")
        if plain_filter.dropped:
            self.echo(f"plain dump: left out {plain_filter.dropped} owner/"
                      "privilege statements (everything belongs to "
                      f"{self.target_url.username})")

    def work_dir(self) -> str:
        # In $TMPDIR: a custom dump's head (its table of contents) and,
        # for the directory route without --keep-dump, the received dump.
        if self.work is None:
            self.work = workdir.WorkDir()
        return self.work.path

    def remove_abandoned_work_dirs(self) -> None:
        for path in workdir.remove_abandoned():
            self.echo(f"removed {path}, left by an import that was killed")

    # -- verify and swap ---------------------------------------------------

    def verify(self) -> tuple[dict[str, int], int, str]:
        conn = _connect(self.staging_url, "the staging database")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = 'public'")
                tables = {row[0] for row in cur.fetchall()}
                missing = [name for name in KEY_TABLES if name not in tables]
                if missing or not tables.intersection(VERSION_TABLES):
                    if not tables.intersection(VERSION_TABLES):
                        missing.append("migrate_version or alembic_version")
                    raise OperatorError(
                        "the dump is not a CKAN database: it has no "
                        + ", ".join(missing))
                counts = {}
                for name in COUNTED_TABLES:
                    if name in tables:
                        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(
                            sql.Identifier("public", name)))
                        counts[name] = cur.fetchone()[0]
                cur.execute("SELECT pg_database_size(current_database()), "
                            "pg_size_pretty(pg_database_size("
                            "current_database()))")
                size, pretty = cur.fetchone()
        finally:
            conn.close()
        return counts, size, pretty

    def swap(self, state: TargetState) -> str | None:
        """Rename the target out of the way and the staging database into
        its place, in one transaction."""
        maintenance = _maintenance_url(self.ddl_admin_url or self.target_url)
        exists = database_exists(self.maintenance, self.target)
        backup = backup_name(self.target) if exists else None
        for name in ([self.target] if exists else []) + [self.staging]:
            count, applications = other_sessions(self.maintenance, name)
            if count:
                raise OperatorError(_sessions_refusal(name, count,
                                                      applications))
        conn = _connect(maintenance, "the database server")
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                if exists:
                    cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(self.target), sql.Identifier(backup)))
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(self.staging), sql.Identifier(self.target)))
            conn.commit()
        except psycopg2.Error as error:
            conn.rollback()
            raise OperatorError(f"cannot swap the imported database in: "
                                f"{db.first_line(error)}")
        finally:
            conn.close()
        self.staging_created = False
        if backup and (state.empty or self.options.drop_old):
            self.drop_database(backup)
            self.echo(f"dropped the previous "
                      f"{'empty ' if state.empty else ''}database")
        return backup

    # -- cleanup -----------------------------------------------------------

    def cleanup(self, failed: bool) -> None:
        for child in self.children:
            child.kill()
        if failed and self.staging_created:
            self.drop_staging_patiently()
        self.release_staging()
        if failed and self.kept_dump and not self.keep_dump_complete:
            # A partial copy would look like a dump; do not leave one (but
            # never unlink what is not a regular file, /dev/full say).
            if self.dump_format == "directory" and os.path.isdir(
                    self.kept_dump) and not os.path.islink(self.kept_dump):
                shutil.rmtree(self.kept_dump, ignore_errors=True)
            elif os.path.isfile(self.kept_dump) \
                    and not os.path.islink(self.kept_dump):
                with contextlib.suppress(OSError):
                    os.unlink(self.kept_dump)
            self.kept_dump = None
        if self.work is not None:
            self.work.remove()


@dataclass
class _Toc:
    """A custom dump's head (its table of contents, maybe some data) and
    the list of its entries to restore, both files in the work directory."""
    head_file: str
    list_file: str


class _SinkClosed(Exception):
    """The loading program stopped reading (it failed; its stderr says
    why)."""


def _double_quoted(text: str) -> str:
    """``text`` as one word for sh, in double quotes."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def _remote_path(path: str) -> str:
    # The remote command starts in the login directory; "~/" would not
    # expand once quoted.
    return path[2:] if path.startswith("~/") else path


def plan(source: str | Source, target_url,
         options: ImportOptions | None = None) -> list[str]:
    """What :func:`import_database` would run, step by step; runs nothing."""
    options = options or ImportOptions()
    if isinstance(source, str):
        source = parse_source(source)
    return _Import(source, target_url, options, _silent).plan()


def import_database(source: str | Source, target_url,
                    options: ImportOptions | None = None,
                    echo: Echo = _silent) -> ImportResult:
    """Import ``source`` into the database of ``target_url`` (see the
    module doc).  Raises OperatorError with a one-line reason on any
    failure, after dropping the staging database; an interrupt (SIGINT,
    or SIGTERM while this runs) is a failure too."""
    options = options or ImportOptions()
    if isinstance(source, str):
        source = parse_source(source)
    job = _Import(source, target_url, options, echo)
    with _signals_raise():
        try:
            return job.run()
        except KeyboardInterrupt as interrupt:
            name = str(interrupt) or "SIGINT"
            raise OperatorError(f"interrupted ({name}); nothing was imported "
                                "and the staging database was removed")
