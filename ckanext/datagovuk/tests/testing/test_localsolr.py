"""The private Solr of tests, the demo and the benchmark: a real Solr 9 from
Maven Central's jars, with CKAN's own schema, that CKAN indexes into and
searches; and its ``run -- CMD`` wrapper, which must leave no JVM behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from ckanext.datagovuk.testing import localsolr

RUN = [sys.executable, "-m", "ckanext.datagovuk.testing.localsolr", "run", "--"]


def jvms_in(directory: str) -> list[int]:
    """Processes whose command line names ``directory`` (the launcher's
    solr home and log directory live there)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().decode(errors="replace")
            except OSError:
                continue
            if directory in cmdline and "java" in cmdline:
                found.append(int(entry))
    return found


def solr_answers(core_url: str) -> str:
    """The schema name the core reports."""
    reply = requests.get(f"{core_url}/schema/name", params={"wt": "json"},
                         timeout=10)
    reply.raise_for_status()
    return reply.json()["name"]


def core_admin(base_url: str, **params) -> dict:
    reply = requests.get(f"{base_url}/admin/cores",
                         params={**params, "wt": "json"}, timeout=60)
    reply.raise_for_status()
    return reply.json()


def start_run(command: list[str]) -> tuple[subprocess.Popen, str, str]:
    """``localsolr run -- command`` in the background; returns the process,
    Solr's directory (from the banner) and the first line ``command``
    prints."""
    wrapper = subprocess.Popen([*RUN, *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    banner = wrapper.stderr.readline()
    assert banner.startswith("private Solr at "), banner
    return wrapper, banner.split(" in ")[-1].strip(), wrapper.stdout.readline()


# --- CKAN against the real Solr ---------------------------------------------

@pytest.mark.usefixtures("clean_db", "clean_index")
def test_ckan_finds_a_dataset_it_created(ckan_solr_url):
    from ckan.plugins import toolkit
    from ckan.tests import factories

    publisher = factories.Organization()
    dataset = factories.Dataset(title="Bathing water quality",
                                notes="Samples taken at beaches in England.",
                                owner_org=publisher["id"])
    factories.Dataset(title="Road traffic counts", owner_org=publisher["id"])

    found = toolkit.get_action("package_search")({}, {"q": "bathing"})

    assert toolkit.config["solr_url"] == ckan_solr_url
    assert [d["id"] for d in found["results"]] == [dataset["id"]]
    # The document is in the Solr core itself, not in a stand-in.
    stored = requests.get(f"{ckan_solr_url}/select", timeout=10, params={
        "q": f"id:{dataset['id']}", "fl": "name,site_id", "wt": "json"}).json()
    assert stored["response"]["docs"] == [
        {"name": dataset["name"], "site_id": toolkit.config["ckan.site_id"]}]


def test_the_core_has_a_schema_version_ckan_accepts(ckan_solr_url):
    from ckan.lib import search

    # False would mean CKAN could not reach Solr; an unsupported version raises.
    assert search.check_solr_schema_version() is True
    name = solr_answers(ckan_solr_url)
    assert name.startswith("ckan-")
    assert name.removeprefix("ckan-") in search.SUPPORTED_SCHEMA_VERSIONS


# --- localsolr run -- CMD ---------------------------------------------------

def test_run_exits_with_the_commands_status_and_leaves_no_jvm():
    result = subprocess.run([*RUN, "sh", "-c", 'echo "$CKAN_SOLR_URL"; exit 7'],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 7, result.stderr
    assert result.stdout.startswith("http://127.0.0.1:")
    assert result.stdout.strip().endswith("/solr/ckan")
    directory = result.stderr.splitlines()[0].split(" in ")[-1]
    assert not os.path.exists(directory)
    assert jvms_in(directory) == []


def test_run_stops_solr_when_it_is_terminated():
    wrapper, directory, url = start_run(
        ["sh", "-c", 'echo "$CKAN_SOLR_URL"; exec sleep 300'])
    try:
        assert solr_answers(url.strip()).startswith("ckan-")
        assert len(jvms_in(directory)) == 1

        wrapper.send_signal(signal.SIGTERM)
        wrapper.wait(timeout=120)
    finally:
        wrapper.kill()

    assert wrapper.returncode != 0
    assert not os.path.exists(directory)
    assert jvms_in(directory) == []


def test_solr_stops_by_itself_when_its_wrapper_is_killed():
    wrapper, directory, line = start_run(
        ["sh", "-c", 'echo "$$ $CKAN_SOLR_URL"; exec sleep 300'])
    command_pid = int(line.split()[0])
    try:
        assert len(jvms_in(directory)) == 1
        wrapper.kill()
        wrapper.wait()
        # The launcher serves until its stdin, held by the wrapper, closes.
        deadline = time.monotonic() + localsolr.STOP_TIMEOUT
        while jvms_in(directory) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jvms_in(directory) == []
    finally:
        os.kill(command_pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


# --- Starting and stopping from Python ---------------------------------------

def test_a_second_solr_takes_new_cores_and_refuses_connections_once_stopped():
    with localsolr.start() as solr:
        created = core_admin(solr.base_url, action="CREATE", name="staging",
                             configSet=localsolr.CONFIGSET)
        cores = core_admin(solr.base_url, action="STATUS")["status"]

        assert created["responseHeader"]["status"] == 0
        assert sorted(cores) == ["ckan", "staging"]
        assert solr_answers(solr.core_url("staging")) == solr_answers(
            solr.core_url())

    with pytest.raises(requests.ConnectionError):
        requests.get(solr.base_url, timeout=10)
    assert not os.path.exists(solr.directory)


def test_a_core_that_cannot_load_fails_the_start_with_its_cause(
        tmp_path, monkeypatch):
    template = tmp_path / "home"
    shutil.copytree(localsolr.HOME_TEMPLATE, template)
    (template / "configsets" / "ckan" / "conf" / "protwords.txt").unlink()
    monkeypatch.setattr(localsolr, "HOME_TEMPLATE", str(template))
    parent = tmp_path / "servers"
    parent.mkdir()

    with pytest.raises(RuntimeError, match="protwords.txt"):
        localsolr.start(parent=str(parent))

    assert list(parent.iterdir()) == []
    assert jvms_in(str(parent)) == []


def test_run_without_java_is_one_line_and_does_not_run_the_command(tmp_path):
    marker = tmp_path / "ran"
    result = subprocess.run([*RUN, "/usr/bin/touch", str(marker)],
                            env={**os.environ, "PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: could not start a private Solr: java is not installed: "
        "Solr needs Java 17"]
    assert not marker.exists()
