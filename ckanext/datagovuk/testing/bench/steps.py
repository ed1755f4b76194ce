"""The steps of a run: what one measured, how several add up to a route,
the phase times our commands report, and the registry of the steps every
run records."""
from __future__ import annotations

import datetime
import re
import sys
from dataclasses import dataclass, field


@dataclass
class Step:
    name: str
    description: str
    status: str = "not measured"        # "ok" | "failed" | "not measured"
    seconds: float | None = None
    # Busy CPU seconds of the whole machine while the step ran.
    cpu_seconds: float | None = None
    reason: str | None = None
    command: str | None = None
    memory: dict = field(default_factory=dict)
    log: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        data = {"description": self.description, "status": self.status,
                "seconds": None if self.seconds is None else round(self.seconds, 3)}
        if self.cpu_seconds is not None:
            data["cpu_seconds"] = round(self.cpu_seconds, 2)
        for key in ("reason", "command", "log"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.memory:
            data["memory"] = self.memory
        if self.details:
            data["details"] = self.details
        return data


def say(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith(("Error", "ERROR", "error",
                                                         "pg_", "psql:", "FATAL"))]
    return (errors or lines or [""])[-1][:300]


def sum_steps(name: str, description: str, parts: list[Step]) -> Step:
    """A route made of several steps: their total time and largest memory."""
    step = Step(name, description, details={"parts": [part.name for part in parts]})
    missing = [part for part in parts if not part.ok]
    if missing:
        step.status = missing[0].status
        step.reason = f"{missing[0].name}: {missing[0].reason}"
        return step
    step.status = "ok"
    step.seconds = sum(part.seconds for part in parts)
    if all(part.cpu_seconds is not None for part in parts):
        step.cpu_seconds = sum(part.cpu_seconds for part in parts)
    memory: dict[str, dict] = {}
    for part in parts:
        for group, entry in part.memory.items():
            merged = memory.setdefault(group, {"peak_mb": 0.0, "processes": 0,
                                               "programs": {}})
            merged["peak_mb"] = max(merged["peak_mb"], entry["peak_mb"])
            merged["processes"] += entry["processes"]
            for program, megabytes in entry["programs"].items():
                merged["programs"][program] = max(
                    merged["programs"].get(program, 0.0), megabytes)
            if "total_mb" in entry:
                merged["total_mb"] = max(merged.get("total_mb", 0.0), entry["total_mb"])
    step.memory = memory
    return step


_PHASE_DONE = re.compile(r"^\s*(?P<phase>[A-Za-z][\w +./()-]*?): done in "
                         r"(?P<seconds>\d+(?:\.\d+)?) ?s\b")
# import's "source: ..." line says how the dump went compressed.
_COMPRESSED_BY = re.compile(r"compressed by ([^,;)]+)")
# migrate's -v report on the history (migrate_report._history_lines).
_HISTORY = re.compile(r"^History: (?P<revisions>\d+) revisions of "
                      r"(?P<datasets>\d+) datasets as activities in "
                      r"(?P<seconds>\d+(?:\.\d+)?) s")
# verify's line for its sample of CKAN's API (verify/checks.py).
_API_SAMPLE = re.compile(r"^\s*API sample: (\d+) datasets, publishers and users")


def parse_report(log_path: str) -> dict:
    """The phase times our commands report (``NAME: done in 12.3 s``, a
    step inside another too with ``-v``) and, from migrate's ``-v`` report,
    the history's revisions, and how much verify asked of CKAN's API; the
    first report of each wins."""
    try:
        with open(log_path, errors="replace") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return {}
    phases: dict[str, float] = {}
    report: dict = {}
    for line in lines:
        match = _PHASE_DONE.match(line)
        if match and match.group("phase") not in phases:
            phases[match.group("phase")] = float(match.group("seconds"))
        match = _COMPRESSED_BY.search(line)
        if match and line.startswith("source: "):
            report["compressed_by"] = match.group(1)
        match = _HISTORY.match(line)
        if match and "history" not in report:
            report["history"] = {key: float(value) if key == "seconds"
                                 else int(value)
                                 for key, value in match.groupdict().items()}
        match = _API_SAMPLE.match(line)
        if match and "api_sample" not in report:
            report["api_sample"] = int(match.group(1))
    if phases:
        report["reported_phases"] = phases
    return report


@dataclass(frozen=True)
class Stage:
    """One stage of a scale: ``Bench.<method>(scale)`` records ``steps``
    (at the comparison scale M, named ``STEP_M``)."""
    method: str
    steps: tuple[str, ...] = ()
    main_scale_only: bool = False


# The stages of one scale, in the order they run: a new measurement is one
# ``stage_...`` method of ``Bench`` and one line here.
STAGES = (
    Stage("stage_startup", ("ckan_startup",), main_scale_only=True),
    Stage("stage_floor", ("floor", "floor_single_copy", "floor_ssh.loopback"),
          main_scale_only=True),
    Stage("stage_import_and_migrate",
          ("import.loopback", "migrate_data", "migrate_upgrade", "promote")),
    Stage("stage_verify", ("verify", "verify_all")),
    Stage("stage_search_index",
          ("search_rebuild", "search_rebuild_fast", "reindex")),
    Stage("stage_manual", ("manual.loopback",), main_scale_only=True),
    Stage("stage_more_rounds", main_scale_only=True),
    Stage("stage_link", ("import.link", "manual.link", "floor_ssh.link"),
          main_scale_only=True),
    Stage("stage_one_run", ("pipeline_one_run",), main_scale_only=True),
)
# The steps every results.json has (measured or "not measured: reason").
EXPECTED_STEPS = tuple(name for stage in STAGES for name in stage.steps)


STAGE_NAMES = tuple(stage.method.removeprefix("stage_") for stage in STAGES)


def stages(main_scale: bool) -> list[Stage]:
    return [stage for stage in STAGES if main_scale or not stage.main_scale_only]


def parse_stages(text: str | None) -> tuple[str, ...]:
    """``--stages a,b``: the stage names (``STAGE_NAMES``) to measure, all
    when not given; ValueError names the first unknown one."""
    if not text:
        return STAGE_NAMES
    chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",")
                                 if name.strip()))
    unknown = [name for name in chosen if name not in STAGE_NAMES]
    if unknown or not chosen:
        raise ValueError(f"unknown stage {unknown[0]!r}" if unknown
                         else "no stage named")
    return chosen


def selected(stage: Stage, chosen: tuple[str, ...]) -> bool:
    return stage.method.removeprefix("stage_") in chosen
