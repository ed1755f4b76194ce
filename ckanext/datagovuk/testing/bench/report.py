"""The results of a run, written as ``results.json`` and ``results.txt``."""
from __future__ import annotations

import json
import os


def format_text(results: dict) -> str:
    params = results["parameters"]
    m = results["machine"]
    lines = [
        "ckanext-datagovuk migration benchmark",
        f"date {m['date']}; {m.get('cpu', '?')}, {m['nproc']} CPUs, "
        f"{m.get('memory_mb', '?')} MB; PostgreSQL {m.get('postgresql', '?')}; "
        f"{m.get('ssh', '')}",
        f"load average (1, 5, 15 min) at start {' '.join(m.get('loadavg_at_start', []))}, "
        f"at end {' '.join(m.get('loadavg_at_end', []))}",
        f"scale N = {params['datasets']} datasets, M = {params['compare_datasets']}; "
        f"seed {params['seed']}; link {params['link_bytes_per_second'] * 8 / 1e6:g} "
        f"Mbit/s each way; wall time {results['wall_seconds']:.0f} s",
    ]
    if not results.get("complete"):
        lines.append("INCOMPLETE: " + (f"interrupted ({results['interrupted']})"
                                       if results.get("interrupted")
                                       else "still running or stopped early"))
    for scale, size in results["sizes"].items():
        lines.append(f"old site of {scale} datasets: "
                     f"{size['database_bytes'] / 2**20:.0f} MB, "
                     f"{size['total_rows']} rows")
    lines += ["", "cpu s: busy CPU seconds of the whole machine (both hosts) "
              f"during the step; busy: that, over {m['nproc']} CPUs x seconds",
              "", f"{'step':<34} {'status':<8} {'seconds':>9} {'cpu s':>7} "
              f"{'busy':>5} {'python MB':>10} {'pg client MB':>13} "
              f"{'remote MB':>10}  what"]
    for name, step in results["steps"].items():
        memory = step.get("memory", {})
        python = memory.get("python", {}).get("peak_mb")
        client = memory.get("pg_client", {})
        client_mb = client.get("total_mb", client.get("peak_mb"))
        remote = memory.get("remote_pg_client", {}).get("peak_mb")
        seconds = step["seconds"]
        cpu = step.get("cpu_seconds")
        busy = (f"{100 * cpu / (seconds * m['nproc']):.0f}%"
                if cpu is not None and seconds and m.get("nproc") else "")
        what = step["description"]
        rounds = step.get("details", {}).get("rounds")
        if rounds:
            what += (f" [median of {len(rounds)} rounds: "
                     + ", ".join(f"{value:.1f}" for value in rounds) + "]")
        if step["status"] != "ok":
            what = f"{step['status']}: {step.get('reason')}"
        lines.append(
            f"{name:<34} {step['status'][:8]:<8} "
            f"{'' if seconds is None else f'{seconds:9.2f}':>9} "
            f"{'' if cpu is None else f'{cpu:7.1f}':>7} {busy:>5} "
            f"{'' if python is None else python:>10} "
            f"{'' if client_mb is None else client_mb:>13} "
            f"{'' if remote is None else remote:>10}  {what}")
    phases = [(name, step["details"]) for name, step in results["steps"].items()
              if step.get("details", {}).get("reported_phases")]
    if phases:
        lines += ["", "phases our commands reported (seconds):"]
        for name, details in phases:
            lines.append(f"  {name:<32} " + ", ".join(
                f"{phase} {seconds:g}"
                for phase, seconds in details["reported_phases"].items())
                + _phase_notes(details))
    counts = [f"  {name:<32} {_counts(step['details'])}"
              for name, step in results["steps"].items()
              if _counts(step.get("details", {}))]
    if counts:
        lines += ["", "what our commands counted:", *counts]
    lines += ["", f"{'ratio':<38} {'value':>8} {'target':>8}  result"]
    if results.get("ratios_recomputed"):
        lines.append(f"(ratios recomputed {results['ratios_recomputed']})")
    for key, ratio in results["ratios"].items():
        value = ratio["value"]
        lines.append(f"{key:<38} {'' if value is None else f'{value:8.2f}':>8} "
                     f"{ratio['target']:>8}  {ratio['status']}")
    return "\n".join(lines) + "\n"


def _phase_notes(details: dict) -> str:
    compressed_by = details.get("compressed_by")
    return f" (compressed by {compressed_by})" if compressed_by else ""


def _counts(details: dict) -> str:
    history = details.get("history")
    found = []
    if history:
        found.append(f"history: {history['revisions']} revisions of "
                     f"{history['datasets']} datasets")
    if details.get("api_sample"):
        found.append(f"API sample: {details['api_sample']} datasets, "
                     "publishers and users")
    return "; ".join(found)


def write_results(results: dict, output: str) -> None:
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=False)
        handle.write("\n")
    with open(os.path.join(output, "results.txt"), "w") as handle:
        handle.write(format_text(results))
