"""The memory of a process tree: every process a step runs, sampled from
``/proc`` and classified by executable."""
from __future__ import annotations

import os
import threading

SAMPLE_INTERVAL = 0.05
PG_CLIENT_PROGRAMS = {"pg_dump", "pg_restore", "psql", "createdb", "dropdb",
                      "pg_dumpall"}
SSH_PROGRAMS = {"ssh", "scp", "sftp"}


def _children(pid: int) -> list[int]:
    children = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _status(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kilobytes(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


def program_of(pid: int, name: str) -> str:
    """The executable's name (``python3.11`` for a ``ckan`` script)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return name


def classify(program: str) -> str:
    if program.startswith("python"):
        return "python"
    if program in PG_CLIENT_PROGRAMS:
        return "pg_client"
    if program in SSH_PROGRAMS:
        return "ssh"
    return "other"


class MemorySampler:
    """Samples the memory of the process trees under ``roots`` (label ->
    pid) every ``interval`` seconds, in a thread, until ``stop()``.

    A process's ``VmHWM`` is its own peak RSS, so the last sample of a process
    holds its peak up to at most one interval before it ended.  For each
    class it keeps the largest single process and the largest sum of RSS of
    processes alive at the same time (``pg_restore -j2`` runs several)."""

    def __init__(self, roots: dict[str, int], interval: float = SAMPLE_INTERVAL,
                 exclude: set[int] = frozenset()):
        self.roots = roots
        self.interval = interval
        self.exclude = set(exclude)
        self.peak_kb: dict[tuple[str, int, str], int] = {}      # (label, pid, program)
        self.total_kb: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="memory-sampler")

    def start(self) -> "MemorySampler":
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return self.result()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                self.sample()
                return

    def sample(self) -> None:
        self.samples += 1
        totals: dict[str, int] = {}
        for label, root in self.roots.items():
            for pid in process_tree(root):
                if pid in self.exclude:
                    continue
                status = _status(pid)
                if not status or "VmHWM" not in status:
                    continue        # gone, or a zombie
                program = program_of(pid, status.get("Name", "?"))
                key = (label, pid, program)
                hwm = _kilobytes(status.get("VmHWM"))
                self.peak_kb[key] = max(self.peak_kb.get(key, 0), hwm)
                group = f"{label}:{classify(program)}"
                totals[group] = totals.get(group, 0) + _kilobytes(status.get("VmRSS"))
        for group, kilobytes in totals.items():
            self.total_kb[group] = max(self.total_kb.get(group, 0), kilobytes)

    def result(self) -> dict:
        """``{"python": {"peak_mb", "processes"}, "pg_client": {..., "total_mb",
        "programs": {name: peak_mb}}, ...}`` for the local tree and
        ``remote_...`` for the remote one."""
        out: dict[str, dict] = {}
        for (label, _pid, program), kilobytes in self.peak_kb.items():
            kind = classify(program)
            group = kind if label == "local" else f"{label}_{kind}"
            entry = out.setdefault(group, {"peak_mb": 0.0, "processes": 0,
                                           "programs": {}})
            megabytes = round(kilobytes / 1024, 1)
            entry["peak_mb"] = max(entry["peak_mb"], megabytes)
            entry["processes"] += 1
            entry["programs"][program] = max(entry["programs"].get(program, 0.0),
                                             megabytes)
        for group_key, kilobytes in self.total_kb.items():
            label, kind = group_key.split(":")
            group = kind if label == "local" else f"{label}_{kind}"
            if group in out:
                out[group]["total_mb"] = round(kilobytes / 1024, 1)
        return out
