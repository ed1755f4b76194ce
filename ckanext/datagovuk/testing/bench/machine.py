"""The machine the benchmark runs on: what it is, its load, and how busy
its CPUs have been (both "hosts" run on it)."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess

from ckanext.datagovuk import db


def busy_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot, summed over its
    CPUs (``/proc/stat``: user, nice, system, irq, softirq; not idle, iowait
    or steal).  The "remote host" runs on this machine too, so a step's
    difference counts both ends of a transfer: against its wall time it
    says whether the step was bound by the CPUs."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")




def loadavg() -> list[str]:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[:3]
    except OSError:
        return []


def machine(admin_url: str) -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "nproc": os.cpu_count(), "platform": platform.platform(),
            "loadavg_at_start": loadavg(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    info["memory_mb"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        conn = db.connect(admin_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                info["postgresql"] = cur.fetchone()[0]
        finally:
            conn.close()
    except Exception as error:      # the report still gets written
        info["postgresql"] = f"unknown ({db.first_line(error)})"
    info["pg_dump"] = subprocess.run(["pg_dump", "--version"], capture_output=True,
                                     text=True).stdout.strip()
    info["ssh"] = subprocess.run(["ssh", "-V"], capture_output=True,
                                 text=True).stderr.strip()
    return info
