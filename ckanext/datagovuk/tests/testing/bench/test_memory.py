"""The memory sampler: the peak of every process of a tree, classified."""
from __future__ import annotations

import subprocess
import sys

from ckanext.datagovuk.testing.bench.memory import MemorySampler


def test_memory_sampler_sees_the_peak_of_a_python_grandchild():
    script = "x = bytearray(80 * 2**20); import time; time.sleep(0.4)"
    child = subprocess.Popen(["bash", "-c",
                              f"{sys.executable} -c '{script}' & "
                              "sleep 0.3; wait"])
    sampler = MemorySampler({"local": child.pid}, interval=0.02).start()
    child.wait()
    memory = sampler.stop()
    assert memory["python"]["peak_mb"] >= 80
    assert memory["other"]["programs"]["bash"] > 0
