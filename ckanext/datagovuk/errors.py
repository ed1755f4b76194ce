"""The errors every command shares, and the signal that becomes one."""
from __future__ import annotations

import signal
from contextlib import contextmanager


class OperatorError(Exception):
    """A failure an operator can act on: the CLI prints its message as one
    line and exits non-zero, with no traceback."""

    exit_code = 1


class Interrupted(Exception):
    """SIGTERM during a command that must undo its work: turned into an
    exception so the command cleans up as on any other error."""


@contextmanager
def sigterm_raises():
    """SIGTERM raises :class:`Interrupted` in the main thread for the
    duration, so a stopped migration rolls back and a stopped reindex drops
    its new core."""
    def handler(signum, frame):
        raise Interrupted("stopped by SIGTERM")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:          # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
