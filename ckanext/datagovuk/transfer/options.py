"""What an operator asks of an import, the checks those settings must pass
before anything runs, and what an import reports back."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.sources import (DEFAULT_REMOTE_DB, Source,
                                                SshSettings)

DEFAULT_REMOTE_PG_DUMP = "pg_dump"
DEFAULT_ADMIN_URL_ENV = "DATAGOVUK_PG_ADMIN_URL"
# Two jobs: with one, pg_restore builds one index at a time
# (docs/benchmark.rst).
DEFAULT_JOBS = 2
# zlib level 1 in the remote pg_dump (in each of its jobs for a directory
# dump): faster than -Z0 even on loopback (less data through ssh) and than
# the default level 6, which takes a core from the restore
# (docs/benchmark.rst).
DEFAULT_COMPRESSION = 1
# How pg_dump dumps on the remote host: "custom" is one stream restored as it
# arrives (indexes and keys with pg_restore -j N once the data is in);
# "directory" is pg_dump -Fd -j N into a temporary directory there, restored
# with -j N once all has arrived.  Over a network the stream overlaps the
# transfer with the restore and wins; README.rst has the measurements.
REMOTE_FORMATS = ("custom", "directory")
DEFAULT_REMOTE_FORMAT = "custom"


@dataclass
class SourceCheck:
    """A read-only query of the source database and what judges its
    answer, run before anything is transferred from [user@]host (by psql
    there, in the same ssh invocation as the version probe), or, for a dump
    file, on the staging database once the data is in and before the
    indexes are built.  psql runs the file ``sql_path`` with the variable
    ``site_user``; ``judge`` gets its output and raises OperatorError to
    stop the import."""
    sql_path: str
    site_user: str
    judge: Callable[[str], None]


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
    # Wait for an import already running into the same target, instead of
    # refusing.
    wait: bool = False
    # Keep a staging database that failed (renamed, its name printed) for
    # inspection, instead of dropping it.
    keep_failed: bool = False
    ssh: SshSettings = field(default_factory=SshSettings)
    source_check: SourceCheck | None = None


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
    # How the dump came compressed (", compressed by zstd -1 on the way").
    wire: str = ""

    def summary_lines(self) -> list[str]:
        # "source: ..." as the -v line, which the benchmark parses.
        lines = [f"source: {self.source} ({self.dump_format} format"
                 f"{self.wire}) imported into database {self.database} "
                 f"({self.size_pretty})"]
        if self.backup_database:
            lines.append(f"the previous database is kept as "
                         f"{self.backup_database}")
        if self.kept_dump:
            lines.append(f"dump kept at {self.kept_dump}")
        lines.append("rows: " + ", ".join(
            f"{name} {count}" for name, count in self.row_counts.items()))
        return lines


def check_options(source: Source, options: ImportOptions,
                  directory_route: bool) -> None:
    """Refuse settings that do not fit together or do not fit the source,
    before anything is touched."""
    if options.jobs < 1:
        raise OperatorError("--jobs must be at least 1")
    if options.drop_old and not options.replace:
        raise OperatorError("--drop-old only makes sense with --replace")
    if options.keep_dump and not source.is_remote:
        raise OperatorError("--keep-dump keeps a copy of a remote "
                            "source; the source is already a local file")
    if options.keep_dump:
        check_keep_dump_path(options.keep_dump, directory=directory_route)
    _check_remote_dump_options(source, options, directory_route)
    if re.search(r"password\s*=|://[^/@]*:[^/@]*@", options.remote_db,
                 re.IGNORECASE):
        raise OperatorError(
            "--remote-db must not hold a password (it would be on the "
            "remote command line): use ~/.pgpass on the remote host")
    if source.is_remote:
        options.ssh.check()


def _check_remote_dump_options(source: Source, options: ImportOptions,
                               directory_route: bool) -> None:
    if options.compression is not None \
            and source.kind != Source.REMOTE_DATABASE:
        raise OperatorError(
            "--compress sets the remote pg_dump's compression, which "
            "only an import from [user@]host runs")
    if options.remote_format not in REMOTE_FORMATS:
        raise OperatorError(f"--remote-format must be one of "
                            f"{', '.join(REMOTE_FORMATS)}")
    if options.remote_format != DEFAULT_REMOTE_FORMAT \
            and source.kind != Source.REMOTE_DATABASE:
        raise OperatorError(
            "--remote-format sets how the remote pg_dump dumps, which "
            "only an import from [user@]host runs")
    if options.remote_tmpdir is not None and not directory_route:
        raise OperatorError(
            "--remote-tmpdir is where the remote host writes a "
            "directory-format dump, which only an import from "
            "[user@]host with --remote-format directory and --jobs 2 "
            "or more makes")


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
