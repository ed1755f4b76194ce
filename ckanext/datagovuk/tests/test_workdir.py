"""Work directories: locked while their import runs, removed by the next
import once their owner is gone."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from ckanext.datagovuk import workdir
from ckanext.datagovuk.workdir import WorkDir


def hold_work_dir(parent) -> tuple[subprocess.Popen, str]:
    """Another process (standing in for a running import) that made a work
    directory in ``parent`` and holds it; returns it and the directory."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from ckanext.datagovuk.workdir import WorkDir
        print(WorkDir({str(parent)!r}).path, flush=True)
        time.sleep(300)
        """)], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def test_a_work_dir_is_kept_while_its_import_runs_and_removed_once_killed(
        tmp_path):
    process, path = hold_work_dir(tmp_path)
    try:
        assert os.path.basename(path).startswith(workdir.PREFIX)
        open(os.path.join(path, "transfer.dump"), "wb").close()
        assert workdir.remove_abandoned(str(tmp_path)) == []
        assert os.path.isdir(path)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert workdir.remove_abandoned(str(tmp_path)) == [path]
    assert not os.path.exists(path)


def test_this_process_s_own_work_dir_is_kept_until_removed(tmp_path):
    work = WorkDir(str(tmp_path))
    assert workdir.remove_abandoned(str(tmp_path)) == []
    work.remove()
    assert os.listdir(tmp_path) == []


def test_an_unlocked_work_dir_is_removed_only_once_it_is_old(tmp_path):
    # What an import leaves between mkdtemp and taking its lock, or what an
    # older version of the extension left (it had no lock file).
    young = tmp_path / f"{workdir.PREFIX}young"
    old = tmp_path / f"{workdir.PREFIX}old"
    for path in (young, old):
        path.mkdir()
        (path / "head.dump").write_bytes(b"PGDMP")
    long_ago = time.time() - workdir.UNLOCKED_GRACE_SECONDS - 10
    os.utime(old, (long_ago, long_ago))
    assert workdir.remove_abandoned(str(tmp_path)) == [str(old)]
    assert young.is_dir() and not old.exists()


def test_only_work_dirs_are_touched(tmp_path):
    long_ago = time.time() - workdir.UNLOCKED_GRACE_SECONDS - 10
    other = tmp_path / "pytest-of-root"
    other.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f"{workdir.PREFIX}link"
    link.symlink_to(target)
    plain_file = tmp_path / f"{workdir.PREFIX}file"
    plain_file.write_text("not a directory")
    for path in (other, target, plain_file):
        os.utime(path, (long_ago, long_ago))
    assert workdir.remove_abandoned(str(tmp_path)) == []
    assert other.is_dir() and target.is_dir() and link.is_symlink() \
        and plain_file.is_file()
