"""The ratios the benchmark checks, their targets, and how each is computed
from the steps of a run."""
from __future__ import annotations

from .steps import Step

# Every ratio the issue sets a target for: (key, what, numerator step,
# denominator step, comparison, target).
RATIO_TARGETS = [
    # The floor: the fastest variant of the selection pass, timed as the
    # import is (the median of rounds, each round copying right before the
    # import).
    ("import_over_floor", "import / floor (loopback)", "<=", 1.15),
    # Not a target of its own: the same target read against the fastest
    # single copy of the selection pass (how the floor was taken at first):
    # the least of several copies at other moments, against a median, which
    # on a shared machine favours the floor (docs/benchmark.rst).
    ("import_over_floor_single_copy",
     "import / the fastest single copy of the selection pass", "<=", 1.15),
    ("manual_over_import_loopback", "manual route / import, loopback", ">=", 1.3),
    ("manual_over_import_link", "manual route / import, 100 Mbit/s link", ">=", 3.0),
    ("data_migration_per_dataset_N_over_M",
     "data migration time per dataset, N / M", "<=", 1.3),
    ("pipeline_over_floor",
     "import + migrate + promote / floor", "<=", 3.0),
    ("pipeline_one_run_over_floor",
     "migrate --from (the same pipeline in one run, reindex included) / floor",
     "<=", 3.0),
    ("pipeline_with_reindex_over_floor",
     "import + migrate + promote + reindex / floor", "<=", 3.0),
    ("search_rebuild_over_reindex",
     "ckan search-index rebuild / datagovuk reindex", ">=", 3.0),
    ("search_rebuild_fast_over_reindex",
     "ckan search-index rebuild-fast (fork-safe copy) / datagovuk reindex",
     ">=", 1.5),
    ("python_peak_rss_mb", "our Python process, peak RSS (MB) at N", "<", 200.0),
    ("python_peak_rss_growth_N_over_M",
     "our Python peak RSS, N / M (not growing: <= 1.10)", "<=", 1.10),
    ("verify_over_import", "datagovuk verify (default sample) / import, at N",
     "<=", 0.3),
    # Reported beside it, with no target of its own.
    ("verify_all_over_import", "datagovuk verify --all / import, at N",
     None, None),
    ("history_per_revision_linearity",
     "history phase of migrate, seconds per revision, N / M", "<=", 1.3),
    ("history_over_pipeline",
     "history phase of migrate --from / the whole migrate --from", "<=", 0.25),
    # Flat as the other commands' (python_peak_rss_growth_N_over_M).
    ("history_python_peak_rss_N_over_M",
     "our Python peak RSS in the migrate runs that convert the history, "
     "N / M", "<=", 1.10),
]
RATIO_KEYS = [key for key, *_ in RATIO_TARGETS]


def _ratio(key, value, comparison, target, reason=None) -> dict:
    entry = {"target": "none" if target is None else f"{comparison} {target:g}",
             "value": None, "pass": None}
    if value is None:
        entry["status"] = f"not measured: {reason}"
        return entry
    entry["value"] = round(value, 3)
    if target is None:
        entry["status"] = "measured"
        return entry
    entry["pass"] = bool({"<=": value <= target, ">=": value >= target,
                          "<": value < target}[comparison])
    entry["status"] = "pass" if entry["pass"] else "miss"
    return entry


DATA_MIGRATION_PHASE = "data migrations"
HISTORY_PHASE = "history"
# The migrate run whose history phase converts the revisions (the one
# after it finds them converted already); both report it.
HISTORY_STEPS = ("migrate_data", "migrate_upgrade")


def migration_seconds(step: Step) -> float:
    phases = step.details.get("reported_phases", {})
    return phases.get(DATA_MIGRATION_PHASE, step.seconds)


def ratios(steps: dict[str, Step], datasets: int, compare: int) -> dict:
    def seconds(*names):
        missing = [n for n in names if n not in steps or not steps[n].ok]
        if missing:
            step = steps.get(missing[0])
            why = step.reason if step else "not run"
            return None, f"{missing[0]}: {why}"
        return [steps[n].seconds for n in names], None

    def python_peak(names):
        peaks = [steps[n].memory.get("python", {}).get("peak_mb")
                 for n in names if n in steps and steps[n].ok]
        peaks = [p for p in peaks if p]
        return max(peaks) if peaks else None

    values: dict[str, tuple] = {}
    got, why = seconds("import.loopback", "floor")
    values["import_over_floor"] = (got and got[0] / got[1], why)
    got, why = seconds("import.loopback", "floor_single_copy")
    values["import_over_floor_single_copy"] = (got and got[0] / got[1], why)
    got, why = seconds("manual.loopback", "import.loopback")
    values["manual_over_import_loopback"] = (got and got[0] / got[1], why)
    got, why = seconds("manual.link", "import.link")
    values["manual_over_import_link"] = (got and got[0] / got[1], why)
    if compare:
        got, why = seconds("migrate_data", f"migrate_data_{compare}")
        if got:
            # The migration's own time (its report), without CKAN's start-up;
            # the wall time when the report does not say.
            got = [migration_seconds(steps["migrate_data"]),
                   migration_seconds(steps[f"migrate_data_{compare}"])]
        values["data_migration_per_dataset_N_over_M"] = (
            got and (got[0] / datasets) / (got[1] / compare), why)
    else:
        values["data_migration_per_dataset_N_over_M"] = (None, "--compare-datasets 0")
    got, why = seconds("import.loopback", "migrate_data", "migrate_upgrade",
                       "promote", "floor")
    values["pipeline_over_floor"] = (got and sum(got[:4]) / got[4], why)
    got, why = seconds("pipeline_one_run", "floor")
    values["pipeline_one_run_over_floor"] = (got and got[0] / got[1], why)
    got, why = seconds("import.loopback", "migrate_data", "migrate_upgrade",
                       "promote", "reindex", "floor")
    values["pipeline_with_reindex_over_floor"] = (got and sum(got[:5]) / got[5],
                                                  why)
    for ours_over, theirs in (("search_rebuild_over_reindex", "search_rebuild"),
                              ("search_rebuild_fast_over_reindex",
                               "search_rebuild_fast")):
        got, why = seconds(theirs, "reindex")
        values[ours_over] = (got and got[0] / got[1], why)
    ours = ["import.loopback", "import.link", "migrate_data", "migrate_upgrade",
            "promote", "verify", "verify_all", "reindex", "pipeline_one_run"]
    peak_n = python_peak(ours)
    values["python_peak_rss_mb"] = (peak_n, None if peak_n else "no command of ours ran")
    if compare:
        # Step by step, where the step ran at both scales.
        growth = []
        for name in ("import.loopback", "migrate_data", "migrate_upgrade", "promote",
                     "verify", "verify_all"):
            peak_n_step = python_peak([name])
            peak_m_step = python_peak([f"{name}_{compare}"])
            if peak_n_step and peak_m_step:
                growth.append(peak_n_step / peak_m_step)
        values["python_peak_rss_growth_N_over_M"] = (
            max(growth) if growth else None,
            None if growth else "no command of ours ran at both scales")
    else:
        values["python_peak_rss_growth_N_over_M"] = (None, "--compare-datasets 0")
    values.update(_verify_ratios(seconds))
    values.update(_history_ratios(steps, compare, python_peak))
    out = {}
    for key, description, comparison, target in RATIO_TARGETS:
        value, why = values[key]
        out[key] = {"description": description,
                    **_ratio(key, value or None, comparison, target, why)}
    return out


def _verify_ratios(seconds) -> dict[str, tuple]:
    """verify's time against the import of the same run, at N."""
    values = {}
    for key, step in (("verify_over_import", "verify"),
                      ("verify_all_over_import", "verify_all")):
        got, why = seconds(step, "import.loopback")
        values[key] = (got and got[0] / got[1], why)
    return values


def history_figures(steps: dict[str, Step], suffix: str = ""
                    ) -> tuple[dict | None, str | None]:
    """The history phase's seconds and revisions, from the migrate run that
    converted it (``migrate_data``) at the scale of ``suffix``."""
    name = HISTORY_STEPS[0] + suffix
    step = steps.get(name)
    if step is None or not step.ok:
        return None, f"{name}: {step.reason if step else 'not run'}"
    seconds = step.details.get("reported_phases", {}).get(HISTORY_PHASE)
    history = step.details.get("history")
    if seconds is None or not history:
        return None, f"{name}: no history phase and revision count in its report"
    if not history["revisions"]:
        return None, f"{name}: no revision converted"
    return {"seconds": seconds, "revisions": history["revisions"]}, None


def _history_ratios(steps: dict[str, Step], compare: int,
                    python_peak) -> dict[str, tuple]:
    values = {}
    if compare:
        at_n, why = history_figures(steps)
        at_m, why_m = history_figures(steps, f"_{compare}")
        values["history_per_revision_linearity"] = (
            at_n and at_m and (at_n["seconds"] / at_n["revisions"])
            / (at_m["seconds"] / at_m["revisions"]), why or why_m)
        growth = [python_peak([name]) / python_peak([f"{name}_{compare}"])
                  for name in HISTORY_STEPS
                  if python_peak([name]) and python_peak([f"{name}_{compare}"])]
        values["history_python_peak_rss_N_over_M"] = (
            max(growth) if growth else None,
            None if growth else "no migrate run at both scales")
    else:
        for key in ("history_per_revision_linearity",
                    "history_python_peak_rss_N_over_M"):
            values[key] = (None, "--compare-datasets 0")
    one_run = steps.get("pipeline_one_run")
    phase = (one_run.details.get("reported_phases", {}).get(HISTORY_PHASE)
             if one_run and one_run.ok else None)
    values["history_over_pipeline"] = (
        phase and phase / one_run.seconds,
        "pipeline_one_run: " + (one_run.reason if one_run and not one_run.ok
                                else "not run" if not one_run else
                                "no history phase in its report"))
    return values
