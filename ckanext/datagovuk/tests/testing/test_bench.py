"""The benchmark's own parts: the rate-limited link, the memory sampler, and
one end-to-end run at a tiny scale (real PostgreSQL, real sshd, our real
commands).  Timing targets are the benchmark's business, never asserted here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from ckanext.datagovuk.testing import bench


def _sink_server(payload_back: bytes):
    """A TCP server that reads everything the client sends (returning its
    sha256), then sends ``payload_back`` and closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received = {}

    def serve():
        conn, _ = server.accept()
        digest, size = hashlib.sha256(), 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            digest.update(data)
            size += len(data)
        received["sha256"], received["size"] = digest.hexdigest(), size
        conn.sendall(payload_back)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], received, thread


def test_throttled_proxy_limits_each_direction_and_keeps_the_bytes():
    rate = 4_000_000
    upload = os.urandom(2_000_000)
    download = os.urandom(2_000_000)
    port, received, thread = _sink_server(download)
    with bench.ThrottledProxy(port, rate=rate, lifetime=60) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        started = time.monotonic()
        client.sendall(upload)
        client.shutdown(socket.SHUT_WR)
        got = bytearray()
        upload_done = None
        while True:
            data = client.recv(65536)
            if upload_done is None:
                upload_done = time.monotonic()
            if not data:
                break
            got.extend(data)
        finished = time.monotonic()
        client.close()
    thread.join(5)
    assert received["size"] == len(upload)
    assert received["sha256"] == hashlib.sha256(upload).hexdigest()
    assert bytes(got) == download
    # Upload then download, each 2 MB at 4 MB/s: about 1 s in all.  A loaded
    # machine can only make it slower; an unthrottled proxy takes ~0.01 s.
    seconds = finished - started
    expected = (len(upload) + len(download)) / rate
    assert seconds >= expected * 0.85, seconds
    assert seconds <= expected * 3, seconds


def test_token_bucket_paces_at_the_rate_after_the_burst():
    bucket = bench.TokenBucket(rate=1000, burst=100)
    assert bucket.delay_for(100, now=10.0) == 0.0
    # The next 1000 bytes need a whole second of link time.
    assert bucket.delay_for(1000, now=10.0) == pytest.approx(1.0)


def test_memory_sampler_sees_the_peak_of_a_python_grandchild():
    script = "x = bytearray(80 * 2**20); import time; time.sleep(0.4)"
    child = subprocess.Popen(["bash", "-c",
                              f"{sys.executable} -c '{script}' & "
                              "sleep 0.3; wait"])
    sampler = bench.MemorySampler({"local": child.pid}, interval=0.02).start()
    child.wait()
    memory = sampler.stop()
    assert memory["python"]["peak_mb"] >= 80
    assert memory["other"]["programs"]["bash"] > 0


def test_ssh_reaches_the_remote_through_the_link_with_host_key_checking(
        pg_admin_url, ckan_db_url, tmp_path):
    from ckanext.datagovuk.testing import localssh

    runner = bench.Bench(bench.parse_args(["--output", str(tmp_path)]),
                         pg_admin_url, ckan_db_url)
    runner.ssh = localssh.start(parent=runner.work)
    try:
        with bench.ThrottledProxy(runner.ssh.port, lifetime=60) as proxy:
            runner.proxy = proxy
            runner.write_ssh_config()
            through_link = subprocess.run(
                runner.ssh_command("echo over-the-link", link=True),
                shell=True, capture_output=True, text=True, timeout=60)
            assert through_link.stdout.strip() == "over-the-link", \
                through_link.stderr
            assert proxy.bytes_forwarded > 0
            # A host key that is not the remote's is refused, link or not.
            other_key = tmp_path / "other_host_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-f", str(other_key)], check=True)
            key_type, key_data = other_key.with_suffix(".pub").read_text().split()[:2]
            with open(runner.ssh.known_hosts_file, "w") as handle:
                handle.write(f"[127.0.0.1]:{runner.ssh.port} {key_type} {key_data}\n")
            refused = subprocess.run(
                runner.ssh_command("echo over-the-link", link=True),
                shell=True, capture_output=True, text=True, timeout=60)
            assert refused.returncode == 255
            assert "host key" in refused.stderr.lower(), refused.stderr
    finally:
        runner.ssh.stop()
        shutil.rmtree(runner.work, ignore_errors=True)


def test_bench_runs_end_to_end_at_a_tiny_scale(tmp_path):
    output = tmp_path / "results"
    # The link is left out to keep this test short; the test above checks
    # the ssh route through it, the first one the proxy's rate.
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.bench", "--datasets", "20",
         "--compare-datasets", "0", "--floor-variants", "ssh_fc_z0_stream",
         "--skip-slow-link", "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert (output / "results.txt").read_text().startswith(
        "ckanext-datagovuk migration benchmark")

    for key in ("date", "nproc", "memory_mb", "cpu", "postgresql"):
        assert results["machine"][key], key
    assert results["parameters"]["datasets"] == 20
    assert results["sizes"]["20"]["rows"]["package"] == 20

    steps = results["steps"]
    link_steps = ("floor_ssh.link", "manual.link", "import.link")
    for name in bench.EXPECTED_STEPS:
        if name in link_steps:
            assert steps[name]["status"] == "not measured", name
            assert steps[name]["reason"] == "--skip-slow-link"
            continue
        assert steps[name]["status"] == "ok", (name, steps[name])
        assert steps[name]["seconds"] > 0, name
    # The selection pass copied once with the one variant given; the floor
    # is that variant timed in rounds, as the import and the manual route
    # are: three rounds (the default), each step counting their median.
    assert steps["floor.ssh_fc_z0_stream"]["status"] == "ok"
    assert "rounds" not in steps["floor.ssh_fc_z0_stream"].get("details", {})
    assert steps["floor_single_copy"]["details"]["best"] == \
        "floor.ssh_fc_z0_stream"
    assert steps["floor"]["details"]["variant"] == "floor.ssh_fc_z0_stream"
    nproc = results["machine"]["nproc"]
    for name in ("floor", "import.loopback", "manual.loopback"):
        details = steps[name]["details"]
        rounds = details["rounds"]
        assert len(rounds) == bench.DEFAULT_ROUNDS == 3, name
        assert steps[name]["seconds"] == pytest.approx(statistics.median(rounds),
                                                       abs=0.001), name
        # The machine's busy CPU seconds, per round: some, and no more than
        # all its CPUs for the whole round.
        cpu_rounds = details["cpu_rounds"]
        assert len(cpu_rounds) == 3, name
        for seconds, cpu in zip(rounds, cpu_rounds):
            assert 0 < cpu <= seconds * nproc + 0.1, (name, seconds, cpu)
        assert steps[name]["cpu_seconds"] == pytest.approx(
            statistics.median(cpu_rounds), abs=0.01), name
    assert not [name for name in steps if "round" in name]
    text = (output / "results.txt").read_text()
    assert "[median of 3 rounds: " in text
    assert "cpu s: busy CPU seconds of the whole machine" in text
    # The manual route's first round is the sum of its four parts.
    parts = [steps[f"manual.loopback.{part}"]["seconds"]
             for part in ("dump", "scp", "createdb", "load")]
    assert steps["manual.loopback"]["details"]["rounds"][0] == pytest.approx(
        sum(parts), abs=0.01)
    # Our import is a Python process running pg_restore; the remote ran pg_dump.
    memory = steps["import.loopback"]["memory"]
    assert memory["python"]["peak_mb"] > 20
    assert "pg_restore" in memory["pg_client"]["programs"]
    assert "pg_dump" in memory["remote_pg_client"]["programs"]
    assert steps["migrate_data"]["details"]["reported_phases"]
    # This machine is both hosts, and has zstd.
    assert steps["import.loopback"]["details"]["compressed_by"] \
        == "zstd -1 on the way"
    assert "(compressed by zstd -1 on the way)" in (
        output / "results.txt").read_text()
    # Each step started once autovacuum had finished (or the wait ran out).
    waits = [step["details"]["autovacuum_wait_seconds"]
             for step in steps.values()
             if "autovacuum_wait_seconds" in step.get("details", {})]
    assert len(waits) >= len(bench.EXPECTED_STEPS)
    assert all(0 <= wait <= bench.AUTOVACUUM_WAIT_LIMIT + 1 for wait in waits)

    ratios = results["ratios"]
    assert set(ratios) == set(bench.RATIO_KEYS)
    assert ratios["import_over_floor"]["value"] == pytest.approx(
        steps["import.loopback"]["seconds"] / steps["floor"]["seconds"],
        rel=1e-3)
    assert ratios["import_over_floor_single_copy"]["value"] == pytest.approx(
        steps["import.loopback"]["seconds"]
        / steps["floor.ssh_fc_z0_stream"]["seconds"], rel=1e-3)
    for key in ("import_over_floor", "import_over_floor_single_copy",
                "manual_over_import_loopback",
                "pipeline_over_floor", "pipeline_one_run_over_floor",
                "python_peak_rss_mb"):
        assert ratios[key]["value"] > 0, key
        assert ratios[key]["status"] in ("pass", "miss"), key
    for key in ("data_migration_per_dataset_N_over_M",
                "python_peak_rss_growth_N_over_M"):
        assert ratios[key]["value"] is None
        assert ratios[key]["status"] == "not measured: --compare-datasets 0"
    assert ratios["manual_over_import_link"]["status"].startswith(
        "not measured: manual.link: --skip-slow-link")
