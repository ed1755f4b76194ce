"""What a command tells its operator: progress while it runs, one result at
the end.

Every ``datagovuk`` command prints through one :class:`Progress` and ends
with one :class:`Result`:

* while it runs, :class:`Progress` prints one line per step as it starts
  and live progress on long steps (on a terminal one line rewritten in
  place, else a line every :data:`LIVE_INTERVAL` seconds at most);
  ``detail`` lines (per revision, per table, per statement) only with
  ``-v``; with ``-q`` nothing but errors;
* at the end, :class:`Result` renders either as ONE JSON object
  ``{ok, steps: [{name, seconds, result}], error, ...command fields}`` or
  as text: the command's own report, a table of the steps with their time
  and result, a total, and the next steps.

Modules below the CLI take a plain ``Callable[[str], None]`` for progress
(a test passes ``list.append``); :func:`detail`, :func:`live` and
:func:`step` work on either, so those modules need not know which.

Bottom layer: imports nothing of this package.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Callable, Iterator, Optional, TextIO

QUIET, NORMAL, VERBOSE = -1, 0, 1
# Without a terminal a live line is repeated at most this often (seconds).
LIVE_INTERVAL = 10.0


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    result: str = ""
    # 1 for a step inside another (migrate's inside migrate --from): in the
    # text table only with -v, never in the JSON's steps (no double count).
    depth: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 3),
                "result": self.result}


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" \
                else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def transfer_text(done: int, seconds: float, total: Optional[int] = None
                  ) -> str:
    """``30.0 MiB of 60.0 MiB, 4.2 MiB/s, 7 s left`` (no total: no ETA)."""
    rate = done / seconds if seconds > 0 else 0.0
    text = human_bytes(done)
    if total:
        text += f" of {human_bytes(total)}"
    text += f", {human_bytes(rate)}/s"
    if total and rate > 0 and done < total:
        text += f", {human_seconds((total - done) / rate)} left"
    return text


class Progress:
    """Prints a run's progress by verbosity; records its steps.

    Called as a function it prints a detail line (``-v`` only), so a module
    that takes ``Callable[[str], None]`` gets the quiet default for free.
    """

    def __init__(self, verbosity: int = NORMAL, stream: Optional[TextIO] = None,
                 tty: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic,
                 interval: float = LIVE_INTERVAL):
        self.verbosity = verbosity
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.interval = interval
        self.steps: list[Step] = []
        self._open: list[Step] = []
        self._live_at: Optional[float] = None
        self._live_text = ""

    # -- lines ------------------------------------------------------------

    def __call__(self, message: str) -> None:
        self.detail(message)

    def detail(self, message: str) -> None:
        if self.verbosity >= VERBOSE:
            self._line(message)

    def notice(self, message: str) -> None:
        """What the operator must see by default (a warning, a leftover
        removed); not with ``-q``."""
        if self.verbosity >= NORMAL:
            self._line(message)

    def live(self, text: str) -> None:
        """Progress of the step under way: rewrites one line on a terminal,
        else prints it at most every ``interval`` seconds."""
        if self.verbosity < NORMAL:
            return
        now = self.clock()
        if self.tty:
            self._live_text = text
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            return
        if self._live_at is None or now - self._live_at >= self.interval:
            self._live_at = now
            self._line(text)

    def clear_live(self) -> None:
        """Take a live line off the terminal (before the result)."""
        if self._live_text:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._live_text = ""

    def _indent(self) -> str:
        return "  " * max(len(self._open) - 1, 0)

    def _line(self, text: str) -> None:
        self.clear_live()
        self.stream.write(self._indent() + text + "\n")
        self.stream.flush()

    # -- steps ------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """One step: a line as it starts (a step inside another only with
        ``-v``), its time and result recorded; ``-v`` also prints its end
        as ``NAME: done in S s``."""
        record = Step(name, depth=len(self._open))
        nested = bool(self._open)
        self.steps.append(record)
        self._open.append(record)
        if not nested:
            # Without a terminal the first live line comes an interval
            # after the step's own line: a short step prints one line.
            self._live_at = self.clock()
        if nested:
            self.detail(f"{name} ...")
            self.live(f"{self._open[0].name}: {name}")
        else:
            self.notice(f"{name} ...")
        started = self.clock()
        try:
            yield record
        except BaseException:
            record.seconds = self.clock() - started
            record.result = record.result or "failed"
            raise
        finally:
            self._open.pop()
        record.seconds = self.clock() - started
        self.detail(f"{name}: done in {record.seconds:.2f} s")


def detail(progress: Callable[[str], None], message: str) -> None:
    """A detail line on a :class:`Progress` (``-v`` only), or on a plain
    callable."""
    progress(message)


def notice(progress: Callable[[str], None], message: str) -> None:
    getattr(progress, "notice", progress)(message)


def live(progress: Callable[[str], None], text: str) -> None:
    """Live progress on a :class:`Progress`; nothing on a plain callable."""
    method = getattr(progress, "live", None)
    if method is not None:
        method(text)


@contextlib.contextmanager
def step(progress: Callable[[str], None], name: str,
         steps: Optional[list] = None) -> Iterator[Step]:
    """A step on a :class:`Progress`; on a plain callable the old
    ``NAME ...`` / ``NAME: done in S s`` lines.  The record is appended to
    ``steps`` too when given."""
    if isinstance(progress, Progress):
        with progress.step(name) as record:
            yield record
    else:
        record = Step(name)
        progress(f"{name} ...")
        started = time.monotonic()
        yield record
        record.seconds = time.monotonic() - started
        progress(f"{name}: done in {record.seconds:.2f} s")
    if steps is not None:
        steps.append(record)


# -- the result ---------------------------------------------------------------

def plain(value: Any) -> Any:
    """``value`` as JSON can hold it (dataclasses as dicts)."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass
class Result:
    """What a command ends with: ok or the error, its steps, its own
    fields, its report text and the next steps."""
    ok: bool = True
    steps: list[Step] = field(default_factory=list)
    error: Optional[str] = None
    fields: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    next_steps: list[str] = field(default_factory=list)
    # Said after the next steps, only with -v (always in the JSON).
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        found = {key: plain(value) for key, value in self.fields.items()
                 if key not in ("ok", "steps", "error")}
        if self.next_steps:
            found.setdefault("next_steps", list(self.next_steps))
        if self.notes:
            found.setdefault("notes", list(self.notes))
        return {"ok": self.ok,
                "steps": [s.to_dict() for s in self.steps if not s.depth],
                "error": self.error, **found}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False,
                          default=str)

    def table(self, verbose: bool = False) -> str:
        """The steps, each with its time and result, and the total (the
        steps inside others too when ``verbose``).  A row reads ``NAME:
        done in S s`` as the -v lines do, which the benchmark parses."""
        shown = [s for s in self.steps if verbose or not s.depth]
        if not shown:
            return ""
        cells = [("  " * s.depth + f"{s.name}: done in {s.seconds:.2f} s"
                  if s.result != "failed" else
                  "  " * s.depth + f"{s.name}: failed after "
                  f"{s.seconds:.2f} s", s.result) for s in shown]
        total = sum(s.seconds for s in self.steps if not s.depth)
        cells.append((f"total: {total:.1f} s", "ok" if self.ok else "failed"))
        width = max(len(left) for left, _ in cells)
        return "\n".join(f"{left:<{width}}  {right}".rstrip()
                         for left, right in cells)

    def to_text(self, verbose: bool = False) -> str:
        """The report, a blank line, the table, then the next steps."""
        tail = [self.table(verbose)] if self.steps else []
        if self.next_steps and self.ok:
            tail.append("Next:")
            tail += [f"  {line}" for line in self.next_steps]
            if verbose:
                tail += [f"  {line}" for line in self.notes]
        return "\n\n".join(part for part in (self.text, "\n".join(tail))
                           if part)
