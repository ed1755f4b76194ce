"""``datagovuk reindex`` against a real Solr: a private one per test
(``localsolr.start()``), so that its swap leaves the session's core alone.
The datasets are made with CKAN's factories in the session's database,
whose own indexer also fills the session's core: the reference documents."""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests

from ckanext.datagovuk.testing import localsolr
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, VENV_BIN, ckan_datagovuk, one_line_error, run_command)

# Set by Solr itself at indexing time, so never equal between two indexes.
VOLATILE_FIELDS = {"indexed_ts", "_version_"}


@pytest.fixture
def solr():
    with localsolr.start() as server:
        yield server


@pytest.fixture
def site(clean_db, clean_index):
    """Ids of the datasets CKAN indexes (public, private, draft) and of a
    deleted one it does not."""
    from ckan.plugins import toolkit
    from ckan.tests import factories

    owner = factories.Organization()["id"]
    indexed = [factories.Dataset(owner_org=owner)["id"] for _ in range(3)]
    indexed.append(factories.Dataset(owner_org=owner, private=True)["id"])
    indexed.append(factories.Dataset(owner_org=owner, state="draft")["id"])
    deleted = factories.Dataset(owner_org=owner)["id"]
    toolkit.get_action("package_delete")({"ignore_auth": True}, {"id": deleted})
    return {"indexed": sorted(indexed), "deleted": deleted}


def core_names(solr) -> list[str]:
    reply = requests.get(f"{solr.base_url}/admin/cores", timeout=30,
                         params={"action": "STATUS", "wt": "json"})
    reply.raise_for_status()
    return sorted(reply.json()["status"])


def documents(core_url: str) -> dict[str, dict]:
    reply = requests.get(f"{core_url}/select", timeout=30, params={
        "q": "*:*", "rows": 5000, "wt": "json"})
    reply.raise_for_status()
    return {doc["id"]: {key: value for key, value in doc.items()
                        if key not in VOLATILE_FIELDS}
            for doc in reply.json()["response"]["docs"]}


def test_reindex_swaps_in_ckans_own_documents_and_keeps_the_old_core(
        site, solr, ckan_solr_url):
    result = ckan_datagovuk(["reindex", "--workers", "2"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert result.returncode == 0, result.stderr
    assert f"{len(site['indexed'])} datasets now served by core ckan" \
        in result.stdout
    served = documents(solr.core_url())
    assert sorted(served) == site["indexed"]
    assert served == documents(ckan_solr_url)
    previous = re.search(r"previous index kept as core (\S+)", result.stdout)
    assert documents(solr.core_url(previous.group(1))) == {}


def test_reindex_in_one_process_with_drop_old_leaves_only_the_live_core(
        site, solr):
    result = ckan_datagovuk(["reindex", "--drop-old", "--workers", "1"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert result.returncode == 0, result.stderr
    assert core_names(solr) == ["ckan"]
    assert sorted(documents(solr.core_url())) == site["indexed"]


def test_a_failed_reindex_is_one_line_and_leaves_the_live_core_serving(
        site, solr):
    before = documents(solr.core_url())
    result = ckan_datagovuk(["reindex", "--configset", "missing"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert "Solr refused CREATE" in one_line_error(result)
    assert documents(solr.core_url()) == before
    assert core_names(solr) == ["ckan"]


def test_an_unreachable_solr_is_one_line(site):
    solr = localsolr.start()
    url = solr.core_url()
    solr.stop()

    result = ckan_datagovuk(["reindex"], env={"CKAN_SOLR_URL": url})

    assert "is unreachable" in one_line_error(result)


def test_a_new_core_whose_schema_ckan_does_not_accept_is_dropped_unused(
        site, solr):
    """(A live core with such a schema never gets this far: CKAN itself
    refuses to start with it.)"""
    conf = os.path.join(solr.home, "configsets", "ckan", "conf")
    old_conf = os.path.join(solr.home, "configsets", "ckan-2.7", "conf")
    shutil.copytree(conf, old_conf)
    with open(os.path.join(old_conf, "schema.xml")) as handle:
        schema = handle.read()
    with open(os.path.join(old_conf, "schema.xml"), "w") as handle:
        handle.write(schema.replace('name="ckan-2.12"', 'name="ckan-2.7"', 1))

    result = ckan_datagovuk(["reindex", "--configset", "ckan-2.7"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert "schema 'ckan-2.7', which this CKAN does not accept" in \
        one_line_error(result)
    assert core_names(solr) == ["ckan"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_reindex_leaves_the_live_core_serving_its_results(
        site, solr, signum):
    from ckan.tests import factories

    # Enough datasets, one per request, for the signal to find it indexing.
    owner = factories.Organization()["id"]
    for _ in range(40):
        factories.Dataset(owner_org=owner)
    first = ckan_datagovuk(["reindex", "--drop-old"],
                           env={"CKAN_SOLR_URL": solr.core_url()})
    assert first.returncode == 0, first.stderr
    served = documents(solr.core_url())

    process = subprocess.Popen(
        [os.path.join(VENV_BIN, "ckan"), "-c", TEST_INI, "datagovuk",
         "reindex", "--workers", "1", "--batch-size", "1"],
        env={**os.environ, "CKAN_SOLR_URL": solr.core_url()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(core_names(solr)) == 1 and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert re.fullmatch(
        r"Error: reindex interrupted: the new core ckan-reindex-\d+ was "
        r"dropped and the live core is unchanged\n", stderr), stderr
    assert process.returncode != 0
    assert core_names(solr) == ["ckan"]
    assert documents(solr.core_url()) == served


@pytest.fixture
def migrated_site(make_database, migrated_old_site_template):
    """A copy of the generated old site after ``migrate``: data.gov.uk's
    shapes of datasets (resources, tags, extras, groups, organizations, a
    relationship), as the move leaves them."""
    return make_database(template=migrated_old_site_template)


def test_the_documents_are_those_of_ckans_own_rebuild(migrated_site, solr):
    """Every stored field of every document, against ``ckan search-index
    rebuild -i`` on the same database (which, like ours, leaves out the
    datasets CKAN's own indexer fails on)."""
    env = {"CKAN_SOLR_URL": solr.core_url()}
    theirs = run_command(["ckan", "-c", TEST_INI, "search-index", "rebuild",
                          "-i", "-q"], db_url=migrated_site, env=env)
    assert theirs.returncode == 0, theirs.stderr
    ours = ckan_datagovuk(["reindex", "--into", "ours", "--no-swap",
                           "--workers", "2", "--batch-size", "40"],
                          db_url=migrated_site, env=env)

    assert ours.returncode == 0, ours.stderr
    expected = documents(solr.core_url())
    assert len(expected) > 100
    assert documents(solr.core_url("ours")) == expected
    assert f"{len(expected)} datasets in core ours (not swapped" in ours.stdout
    left_out = re.findall(r"^  (\S+): ", ours.stdout, re.MULTILINE)
    assert left_out, "the site has a relationship, which CKAN cannot index"
    for dataset_id in left_out:
        assert dataset_id not in expected
    assert core_names(solr) == ["ckan", "ours"]


def test_into_a_core_that_exists_is_refused_before_anything(site, solr):
    before = documents(solr.core_url())
    result = ckan_datagovuk(["reindex", "--into", "ckan"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert "Solr core ckan exists already" in one_line_error(result)
    assert core_names(solr) == ["ckan"]
    assert documents(solr.core_url()) == before


def test_no_swap_with_drop_old_is_a_usage_error(site, solr):
    result = ckan_datagovuk(["reindex", "--no-swap", "--drop-old"],
                            env={"CKAN_SOLR_URL": solr.core_url()})

    assert result.returncode == 2
    assert "--drop-old does not go with --no-swap" in result.stderr
    assert core_names(solr) == ["ckan"]


def test_progress_without_a_terminal_is_a_line_at_a_time():
    from ckanext.datagovuk.search.reindex import Progress

    log = io.StringIO()
    progress = Progress(10, terminal=log, log=log)
    progress(5)             # within the interval: nothing
    progress(10)            # the end: always shown

    assert len(log.getvalue().splitlines()) == 1
    assert log.getvalue().startswith("indexed 10/10 datasets")
