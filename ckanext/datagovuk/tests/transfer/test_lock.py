"""One import per target: the lock held by one process is seen, named and
waited for by another, and goes when its process dies.  Two real processes
on the real server (the whole import is the fault suite's
``test_two_imports_into_one_target``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer import lock

HOLDER = """
import sys, time
from ckanext.datagovuk.transfer.lock import TargetLock
held = TargetLock(sys.argv[1], print)
held.acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(ckan_db_url):
    """Another process holding the import lock on the test database."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ckan_db_url], text=True,
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout.readline() == "held\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_import_refuses_at_once_naming_the_first(holder,
                                                          ckan_db_url):
    started = time.monotonic()
    with pytest.raises(OperatorError) as refusal:
        lock.TargetLock(ckan_db_url, print).acquire()
    message = str(refusal.value)
    assert time.monotonic() - started < 5
    assert "another import into the database" in message
    assert f"(pid {holder.pid} on " in message
    assert ", started 20" in message and " UTC)" in message
    assert "--wait" in message and "\n" not in message


def test_another_target_is_not_held(holder, make_database):
    other = lock.TargetLock(make_database(), print)
    other.acquire()
    other.release()


def test_wait_starts_once_the_first_is_gone_even_killed(holder, ckan_db_url):
    said = []
    waiter = lock.TargetLock(ckan_db_url, said.append)
    thread = threading.Thread(target=waiter.acquire, kwargs={"wait": True})
    thread.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.1)
    assert said and f"(pid {holder.pid} on " in said[0], said
    assert thread.is_alive()
    # kill -9: nothing of the first process cleans up; its session ends.
    holder.send_signal(signal.SIGKILL)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert said[-1].startswith("the other import into")
    waiter.release()


def test_released_lock_is_free_again(ckan_db_url):
    first = lock.TargetLock(ckan_db_url, print)
    first.acquire()
    first.release()
    second = lock.TargetLock(ckan_db_url, print)
    second.acquire()
    second.release()


def test_application_name_fits_and_is_read_back():
    name = lock.application_name(4194304, "h" * 80)
    assert len(name.encode()) == lock.APPLICATION_NAME_BYTES
    assert lock.describe_holder(lock.application_name(42, "old"),
                                "2026-12-05 07:00:00", 999) == \
        "pid 42 on old, started 2026-12-05 07:00:00 UTC"
    assert lock.describe_holder(None, None, 999) == "server process 999"
