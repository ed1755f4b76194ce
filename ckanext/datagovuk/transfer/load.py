"""Loading the source into the staging database, by route: a remote
stream (custom format restored as it arrives, or plain SQL through
``psql``), a remote directory-format dump received as tar archives, or a
local file; and the ``--keep-dump`` copy of what arrived."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import Callable, ContextManager

from ckanext.datagovuk import workdir
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.options import ImportOptions
from ckanext.datagovuk.transfer.plain import PlainDumpFilter, detect_format
from ckanext.datagovuk.transfer.remote import Remote
from ckanext.datagovuk.transfer.restore import Restore, Toc, finish
from ckanext.datagovuk.transfer.sources import TOC_FILE, Source
from ckanext.datagovuk.transfer.staging import Staging
from ckanext.datagovuk.transfer.stream import (Child, Children, Echo,
                                               SinkClosed, human_bytes, pump,
                                               read_head)

Phase = Callable[[str], ContextManager[None]]


class Loader:
    def __init__(self, source: Source, options: ImportOptions, echo: Echo,
                 phase: Phase, staging: Staging, remote: Remote,
                 children: Children):
        self.source = source
        self.options = options
        self.echo = echo
        self.phase = phase
        self.staging = staging
        self.remote = remote
        self.children = children
        self.restore = Restore(staging, children, self.work_dir, echo)
        self.work: workdir.WorkDir | None = None
        self.dump_format = ""
        self.bytes_transferred = 0
        self.kept_dump: str | None = None
        self.keep_dump_complete = False
        # Called once the data is in, before the indexes are built (when
        # the dump's format lets them wait), if set.
        self.data_loaded: Callable[[], None] | None = None
        # The transfer in one line, for the step's result.
        self.transfer_summary = ""

    def load(self, remote_dump: Child | None = None) -> None:
        if remote_dump is not None:
            self.load_remote_directory(remote_dump)
        elif self.source.is_remote:
            reader = self.remote.start(self.children)
            stream = reader.process.stdout
            if self.remote.zstd_transport:
                decompress = self.children.start(
                    "zstd", [self.remote.zstd_program, "-d", "-q", "-c"],
                    stdin=stream, stdout=subprocess.PIPE)
                # zstd -d holds the pipe now; ssh must see it close if
                # zstd stops.
                stream.close()
                reader.linked.append(decompress)
                stream = decompress.process.stdout
            self.load_stream(stream, reader)
        else:
            self.load_local_file(self.source.path)

    def describe_source(self) -> str:
        return f"source: {self.source.describe(self.options.remote_db)}"

    def fail_on_error(self, reader: Child | None):
        """What a failed read calls first: the remote side's reason."""
        return None if reader is None else lambda: self.remote.fail(reader)

    # -- a remote directory-format dump ------------------------------------

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

    def load_remote_directory(self, reader: Child) -> None:
        """Receive the remote host's directory-format dump as a stream of
        tar archives (one per table's data file, then the rest), unpack it
        here, then ``pg_restore -j N`` it."""
        path = self.directory_spool()
        self.dump_format = "directory"
        self.echo(f"{self.describe_source()} "
                  f"(directory format, pg_dump -j {self.options.jobs} "
                  "there, each table sent as soon as it is dumped)")
        with self.phase("remote dump+transfer") as step:
            self.receive_directory(reader, path)
            step.result = self.transfer_summary
        self.keep_dump_complete = True
        # The transfer is the long stretch with no session of ours but the
        # lock's.
        self.staging.hold_claim()
        with self.phase("restore"):
            self.restore.restore_file(path, self.options.jobs)

    def receive_directory(self, reader: Child, path: str) -> None:
        stream = reader.process.stdout
        head = read_head(stream, 1, self.fail_on_error(reader))
        if not head:
            self.remote.fail(reader, nothing_received=True)
        # --ignore-zeros: one archive per data file, then the rest.
        unpack = self.children.start(
            "tar", ["tar", "-x", "--ignore-zeros", "-f", "-", "-C", path,
                    "--no-same-owner"], stdin=subprocess.PIPE)
        try:
            self.bytes_transferred, self.transfer_summary = pump(
                stream, head, [(unpack.process.stdin, "tar")], self.echo,
                "received", self.fail_on_error(reader))
        except SinkClosed:
            reader.kill()
        finally:
            with contextlib.suppress(OSError):
                unpack.process.stdin.close()
        self.remote.fail(reader)
        if unpack.wait() != 0:
            raise OperatorError(
                f"the dump from {self.source.host} could not be unpacked "
                f"in {path}: {unpack.error_line() or 'tar failed'}")
        if not os.path.isfile(os.path.join(path, TOC_FILE)):
            raise OperatorError(f"the dump is truncated or corrupt: "
                                f"it has no {TOC_FILE}")

    # -- a local file ------------------------------------------------------

    def load_local_file(self, path: str) -> None:
        if os.path.isdir(path):
            self.dump_format = "directory"
            size = sum(entry.stat().st_size for entry in os.scandir(path)
                       if entry.is_file())
            self.echo(f"source: {path} (directory format, "
                      f"{human_bytes(size)})")
            self.restore_local(path, size)
            return
        try:
            with open(path, "rb") as handle:
                head = handle.read(65536)
        except OSError as error:
            raise OperatorError(f"cannot read {path}: {error.strerror}")
        self.dump_format = detect_format(head)
        self.echo(f"source: {path} ({self.dump_format} format, "
                  f"{human_bytes(os.path.getsize(path))})")
        size = os.path.getsize(path)
        if self.dump_format == "custom":
            self.restore_local(path, size)
        else:
            with self.phase("load") as step, open(path, "rb") as handle:
                self.stream_plain(handle, None, "read")
                step.result = self.transfer_summary
            self.after_data()

    def restore_local(self, path: str, size: int) -> None:
        """A local custom or directory dump; with a check to run once the
        data is in, the indexes and keys wait for it."""
        if self.data_loaded is None:
            with self.phase("restore") as step:
                self.restore.restore_file(path, self.options.jobs, size=size)
                step.result = f"{human_bytes(size)} restored"
            return
        with self.phase("restore") as step:
            self.restore.restore_file(path, self.options.jobs,
                                      ("pre-data", "data"), size=size)
            step.result = f"{human_bytes(size)} restored"
        self.after_data()
        with self.phase("indexes and keys") as step:
            self.restore.restore_file(path, self.options.jobs,
                                      ("post-data",))
            step.result = f"pg_restore -j {self.options.jobs}"

    def after_data(self) -> None:
        if self.data_loaded is not None:
            self.data_loaded()

    # -- a remote stream ---------------------------------------------------

    def load_stream(self, stream, reader: Child) -> None:
        """A remote dump: find its format, then stream it into the load as
        it arrives."""
        head = read_head(stream, 65536, self.fail_on_error(reader))
        self.dump_format = self.format_of_stream(head, reader)
        source = self.describe_source()
        wire = self.remote.wire_note()
        if self.dump_format == "plain":
            self.echo(f"{source} (plain format)")
            with self.phase("transfer+load") as step:
                self.stream_plain(stream, reader, "received", head)
                step.result = self.transfer_summary
            self.after_data()
        elif self.options.jobs > 1:
            self.echo(f"{source} (custom format{wire}, "
                      "restored as it arrives; indexes and keys then built "
                      f"with pg_restore -j {self.options.jobs})")
            with self.phase("transfer+restore") as step:
                toc = self.stream_custom(stream, reader, head,
                                         sections=("pre-data", "data"))
                step.result = self.transfer_summary
            self.after_data()
            with self.phase("indexes and keys") as step:
                self.restore.restore_post_data(toc, self.options.jobs)
                step.result = f"pg_restore -j {self.options.jobs}"
        else:
            self.echo(f"{source} (custom format{wire})")
            with self.phase("transfer+restore") as step:
                self.stream_custom(stream, reader, head)
                step.result = self.transfer_summary
            self.after_data()

    def format_of_stream(self, head: bytes, reader: Child) -> str:
        if not head:
            # Nothing arrived: the remote side failed before sending.
            self.remote.fail(reader, nothing_received=True)
        try:
            return detect_format(head)
        except OperatorError:
            reader.kill()
            raise

    def stream_custom(self, stream, reader: Child, head: bytes,
                      sections: tuple[str, ...] = ()) -> Toc:
        """Stream a custom dump into one ``pg_restore`` (only ``sections``
        of it, if given), after reading its table of contents (held back in
        memory) for the extensions."""
        head, toc = self.restore.peek_toc(stream, reader, head,
                                          self.remote.fail)
        keep = self.open_keep_dump()
        restore = self.restore.start(
            toc.list_file, 1, [f"--section={section}" for section in sections],
            stdin=subprocess.PIPE)
        verb = ("received (decompressed)" if self.remote.zstd_transport
                else "received")
        self.feed(restore, stream, reader, head, verb, keep)
        self.remote.fail(reader)
        self.keep_dump_complete = True
        finish(restore)
        return toc

    def stream_plain(self, stream, reader: Child | None, verb: str,
                     head: bytes = b"") -> None:
        keep = self.open_keep_dump() if reader is not None else None
        plain_filter = PlainDumpFilter(self.staging.ensure_extension)
        psql = self.restore.start_psql()
        self.feed(psql, stream, reader, head, verb, keep, plain_filter)
        if reader is not None:
            self.remote.fail(reader)
            self.keep_dump_complete = True
        status = psql.wait()
        if status != 0:
            line = psql.error_line()
            raise OperatorError(f"loading the plain SQL dump failed, nothing "
                                f"was imported: {line or f'psql exit {status}'}")
        if plain_filter.dropped:
            self.echo(f"plain dump: left out {plain_filter.dropped} owner/"
                      "privilege statements (everything belongs to "
                      f"{self.staging.target_url.username})")

    def feed(self, loader: Child, stream, reader: Child | None, head: bytes,
             verb: str, keep, transform=None) -> None:
        """Pump the dump into ``loader``'s stdin (and into ``keep``)."""
        try:
            self.bytes_transferred, self.transfer_summary = pump(
                stream, head, [(loader.process.stdin, loader.name)],
                self.echo, verb, self.fail_on_error(reader),
                transform=transform, raw_sinks=[keep],
                raw_name=self.options.keep_dump)
        except SinkClosed:
            # The loader stopped reading: its error says why.
            if reader is not None:
                reader.kill()
        finally:
            with contextlib.suppress(OSError):
                loader.process.stdin.close()
            if keep:
                self.close_keep(keep)

    # -- --keep-dump and the work directory --------------------------------

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

    def close_keep(self, keep) -> None:
        try:
            keep.close()
        except OSError as error:
            raise OperatorError(f"cannot write {self.options.keep_dump}: "
                                f"{error.strerror}")

    def work_dir(self) -> str:
        # In $TMPDIR: a custom dump's head (its table of contents) and,
        # for the directory route without --keep-dump, the received dump.
        if self.work is None:
            self.work = workdir.WorkDir()
        return self.work.path

    def cleanup(self, failed: bool) -> None:
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
