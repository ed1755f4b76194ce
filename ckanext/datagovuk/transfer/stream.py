"""Moving a dump's bytes: the child processes that send and load them, the
pump (and the kernel splice) between them, progress, and the signals that
stop an import."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Callable, Iterable, Optional

from ckanext.datagovuk import output
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.output import human_bytes

CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL = 2.0
NOISE_PREFIXES = ("Warning: Permanently added", "** ", "Pseudo-terminal")

Echo = Callable[[str], None]
# Called when reading the dump fails, before the read error is raised: it
# raises the sending side's own reason instead when there is one.
OnReadError = Optional[Callable[[], None]]


def silent(_message: str) -> None:
    pass


def bytes_read(pid: int) -> int:
    """What process ``pid`` and its children (pg_restore's -j workers) have
    read so far, by /proc/PID/io; 0 where that cannot be read."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            pids += [int(child) for child in handle.read().split()]
    for each in pids:
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{each}/io") as handle:
                for line in handle:
                    if line.startswith("rchar:"):
                        total += int(line.split()[1])
    return total


def watch_reading(child: "Child", total: int, echo: Echo, label: str,
                  interval: float = 1.0) -> None:
    """Live progress of a program that reads a ``total``-byte dump itself
    (a local ``pg_restore``): bytes read, rate and time left; returns when
    it exits."""
    started = time.monotonic()
    while True:
        try:
            child.process.wait(timeout=interval)
            return
        except subprocess.TimeoutExpired:
            pass
        done = min(bytes_read(child.process.pid), total)
        if done:
            output.live(echo, f"{label}: " + output.transfer_text(
                done, time.monotonic() - started, total))


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


# --------------------------------------------------------------------------
# Signals

class Interrupted(KeyboardInterrupt):
    """Raised from our SIGTERM handler, so that a ``kill`` cleans up like
    Ctrl-C does."""


@contextlib.contextmanager
def signals_raise():
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
def signals_ignored():
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


# --------------------------------------------------------------------------
# Child processes

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


class Child:
    """A child process whose stderr is collected and which we may kill."""

    def __init__(self, name: str, args: list[str], env: dict | None = None,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        self.name = name
        self.killed = False
        # Processes reading this one's output (zstd -d), stopped with it.
        self.linked: list[Child] = []
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


class Children:
    """Every child process an import starts, so that cleanup kills them
    all."""

    def __init__(self):
        self.started: list[Child] = []

    def start(self, name: str, args: list[str], **kwargs) -> Child:
        child = Child(name, args, **kwargs)
        self.started.append(child)
        return child

    def kill_all(self) -> None:
        for child in self.started:
            child.kill()


# --------------------------------------------------------------------------
# The pump

class SinkClosed(Exception):
    """The loading program stopped reading (it failed; its stderr says
    why)."""


class Progress:
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
            output.live(self.echo, f"{self.label}: " + output.transfer_text(
                self.count, now - self.started))

    def report(self) -> str:
        """The whole transfer in one line (detail; the step's result)."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        summary = (f"{human_bytes(self.count)} in {elapsed:.1f} s "
                   f"({human_bytes(self.count / elapsed)}/s)")
        self.echo(f"{self.label}: {summary}")
        return summary


def pipe_without_buffer(handle) -> bool:
    """Whether ``os.splice`` may move data from or to ``handle``: a pipe
    opened unbuffered (a child's stdin or stdout with bufsize=0), so that no
    byte waits in a Python buffer."""
    try:
        return (hasattr(os, "splice") and isinstance(handle, io.FileIO)
                and stat.S_ISFIFO(os.fstat(handle.fileno()).st_mode))
    except (OSError, ValueError):
        return False


def read_chunk(stream, size: int, on_error: OnReadError) -> bytes:
    try:
        return stream.read1(size) if hasattr(stream, "read1") \
            else stream.read(size)
    except OSError as error:
        if on_error is not None:
            on_error()
        raise OperatorError(f"cannot read the dump: {error.strerror}")


def read_head(stream, size: int, on_error: OnReadError,
              head: bytes = b"") -> bytes:
    data = bytearray(head)
    while len(data) < size:
        chunk = read_chunk(stream, size - len(data), on_error)
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data)


def write_all(sink, data: bytes, name: str) -> None:
    if not data:
        return
    try:
        view = memoryview(data)
        while view:
            # A raw pipe may take part of it (a signal mid-write).
            written = sink.write(view)
            view = view[len(view) if written is None else written:]
    except BrokenPipeError:
        raise SinkClosed(name)
    except OSError as error:
        raise OperatorError(f"cannot write {name}: {error.strerror}")


def pump(stream, head: bytes, sinks: list, echo: Echo, verb: str,
         on_error: OnReadError, transform=None, raw_sinks: Iterable = (),
         raw_name: str | None = None) -> tuple[int, str]:
    """Copy the dump from ``stream`` to every ``(sink, name)``, reporting
    progress; how many bytes came, and that in a line.  ``raw_sinks`` (named ``raw_name``) get
    the bytes as received (--keep-dump), ``sinks`` get them after
    ``transform`` (a PlainDumpFilter)."""
    progress = Progress(echo, verb)
    raw_sinks = [sink for sink in raw_sinks if sink is not None]
    splice = (not raw_sinks and transform is None and len(sinks) == 1
              and pipe_without_buffer(stream)
              and pipe_without_buffer(sinks[0][0]))
    chunk = head
    while True:
        if chunk:
            progress.add(len(chunk))
            for sink in raw_sinks:
                write_all(sink, chunk, raw_name)
            data = transform.feed(chunk) if transform else chunk
            for sink, name in sinks:
                write_all(sink, data, name)
        if splice:
            splice_rest(stream, *sinks[0], progress, on_error)
            break
        chunk = read_chunk(stream, CHUNK_SIZE, on_error)
        if not chunk:
            break
    if transform is not None:
        tail = transform.finish()
        for sink, name in sinks:
            write_all(sink, tail, name)
    return progress.count, progress.report()


def splice_rest(stream, sink, name: str, progress: Progress,
                on_error: OnReadError) -> None:
    """The rest of ``stream`` into ``sink``, pipe to pipe inside the
    kernel: most of an import's bytes (all of them once zstd -d has
    decompressed them) then never pass through Python."""
    source, target = stream.fileno(), sink.fileno()
    while True:
        try:
            moved = os.splice(source, target, CHUNK_SIZE)
        except BrokenPipeError:
            raise SinkClosed(name)
        except OSError as error:
            if on_error is not None:
                on_error()
            raise OperatorError(f"cannot read the dump: {error.strerror}")
        if not moved:
            return
        progress.add(moved)
