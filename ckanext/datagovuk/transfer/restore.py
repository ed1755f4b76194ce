"""``pg_restore`` into the staging database: a dump's table of contents
(read from the head of a streamed dump, or from a whole dump file), the
entries to restore, and the restore's own failure told apart from a
truncated dump."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Callable

from ckanext.datagovuk import db
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.staging import Staging
from ckanext.datagovuk.transfer.stream import (Child, Children, Echo,
                                               meaningful_line, pg_program,
                                               read_head, silent,
                                               watch_reading)

# How much of a streamed custom dump may be held back to read its table of
# contents (a CKAN schema's is about 100 KB) before the load starts.
TOC_PEEK_LIMIT = 64 << 20


def restore_args(database: str, list_file: str | None = None,
                 jobs: int = 1) -> list[str]:
    args = [pg_program("pg_restore"), "--no-owner", "--no-privileges",
            "--no-tablespaces", "--no-publications", "--no-subscriptions",
            "--no-security-labels", "--exit-on-error", "-d", database]
    if list_file:
        args += ["-L", list_file]
    if jobs > 1:
        args += ["-j", str(jobs)]
    return args


def psql_args(database: str) -> list[str]:
    return [pg_program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "--single-transaction", "-d", database, "-f", "-"]


@dataclass
class Toc:
    """A custom dump's head (its table of contents, maybe some data) and
    the list of its entries to restore, both files in the work directory."""
    head_file: str
    list_file: str


class Restore:
    """The programs that load a dump into ``staging``."""

    def __init__(self, staging: Staging, children: Children,
                 work_dir: Callable[[], str], echo: Echo = silent):
        self.echo = echo
        self.staging = staging
        self.children = children
        self.work_dir = work_dir

    def env(self) -> dict[str, str]:
        env = db.libpq_env(self.staging.url)
        env.setdefault("PGAPPNAME", "datagovuk-import")
        env["PGCONNECT_TIMEOUT"] = "15"
        return env

    def start(self, list_file: str | None, jobs: int, extra: list[str],
              **kwargs) -> Child:
        return self.children.start(
            "pg_restore",
            [*restore_args(self.staging.name, list_file, jobs), *extra],
            env=self.env(), **kwargs)

    def start_psql(self) -> Child:
        return self.children.start("psql", psql_args(self.staging.name),
                                   env=self.env(), stdin=subprocess.PIPE)

    def peek_toc(self, stream, reader: Child, head: bytes,
                 fail: Callable[[Child], None]) -> tuple[bytes, Toc]:
        """Read just enough of a streamed custom dump for ``pg_restore -l``
        to list its table of contents; that head stays in the work
        directory for the post-data restore.  ``fail`` raises the sending
        side's reason, if it has one."""
        size = max(len(head), 256 << 10)
        path = os.path.join(self.work_dir(), "head.dump")
        while True:
            head = read_head(stream, size, lambda: fail(reader), head)
            complete = len(head) < size
            with open(path, "wb") as handle:
                handle.write(head)
            listing = subprocess.run([pg_program("pg_restore"), "-l", path],
                                     capture_output=True, text=True)
            if listing.returncode == 0:
                return head, Toc(path, self.write_toc_list(listing.stdout))
            if complete or size >= TOC_PEEK_LIMIT \
                    or "end of file" not in listing.stderr:
                if not complete:
                    # More is coming that nobody will read.
                    reader.kill()
                fail(reader)
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
                    self.staging.ensure_extension(entry[2])
                if entry[:3] == ["COMMENT", "-", "EXTENSION"]:
                    continue
            kept.append(line)
        path = os.path.join(self.work_dir(), "restore.list")
        with open(path, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        return path

    def restore_file(self, path: str, jobs: int,
                     sections: tuple[str, ...] = (), size: int = 0) -> None:
        """A whole dump here (a custom-format file or a directory, of
        ``size`` bytes), or only its ``sections``, with ``pg_restore -j
        jobs``, showing how much of it has been read."""
        listing = subprocess.run([pg_program("pg_restore"), "-l", path],
                                 capture_output=True, text=True)
        if listing.returncode != 0:
            raise OperatorError(f"the dump is truncated or corrupt: "
                                f"{meaningful_line(listing.stderr)}")
        list_file = self.write_toc_list(listing.stdout)
        restore = self.start(list_file, jobs, [
            *(f"--section={section}" for section in sections), path])
        if size:
            watch_reading(restore, size, self.echo, "restore")
        finish(restore)

    def query_file(self, sql_path: str, site_user: str) -> str:
        """What psql answers to the read-only query in ``sql_path`` on the
        staging database (NUL-separated, as the source check reads it)."""
        result = subprocess.run(
            [pg_program("psql"), "-X", "-w", "-q", "-A", "-t", "-z", "-0",
             "-v", "ON_ERROR_STOP=1", "-v", f"site_user={site_user}",
             "-d", self.staging.name, "-f", sql_path],
            env=self.env(), capture_output=True, text=True)
        if result.returncode != 0:
            raise OperatorError(f"cannot read the loaded data: "
                                f"{meaningful_line(result.stderr)}")
        return result.stdout

    def restore_post_data(self, toc: Toc, jobs: int) -> None:
        """The indexes, keys and the rest of the post-data section, with
        ``pg_restore -j N``.  They need only the table of contents, which a
        custom dump has at its head: the whole dump is never stored here."""
        finish(self.start(toc.list_file, jobs,
                          ["--section=post-data", toc.head_file]))


def finish(restore: Child) -> None:
    """Wait for ``pg_restore``; its failure as one line."""
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
