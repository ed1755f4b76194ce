"""The local work directory of an import, and the removal of the ones that
imports killed outright (kill -9, the OOM killer) left behind.

An import holds an exclusive ``flock`` on a file in its work directory for
as long as it runs; the kernel drops the lock when the process dies, however
it dies.  So a work directory whose lock can be taken belongs to nobody any
more, and the next import removes it, as it drops such an import's staging
database (``transfer.staging.Staging.claim``).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time

PREFIX = "datagovuk-import-"
LOCK_FILE = ".in-use"
# Between mkdtemp and the lock, a directory is unlocked but in use: one with
# no lock file is only taken for abandoned once it is this old.
UNLOCKED_GRACE_SECONDS = 60


class WorkDir:
    """A new work directory in ``parent`` ($TMPDIR by default), locked."""

    def __init__(self, parent: str | None = None):
        self.path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
        self._lock = os.open(os.path.join(self.path, LOCK_FILE),
                             os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def remove_abandoned(parent: str | None = None) -> list[str]:
    """Remove the work directories in ``parent`` that no running import
    holds; returns their paths.  Only this user's directories are looked
    at."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.name.startswith(PREFIX) \
                    or not entry.is_dir(follow_symlinks=False) \
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            if _remove_if_abandoned(entry.path):
                removed.append(entry.path)
        except OSError:
            continue        # gone meanwhile, or not ours to look into
    return removed


def _remove_if_abandoned(path: str) -> bool:
    """Remove ``path`` if nobody holds it; whether it was removed."""
    try:
        lock = os.open(os.path.join(path, LOCK_FILE),
                       os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if time.time() - os.stat(path).st_mtime < UNLOCKED_GRACE_SECONDS:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False    # a running import's
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(lock)
