"""What a command prints while it runs and at its end (output.py).

The clock is a counter the test moves, so that "at most one line every
10 s" is checked without waiting 10 s; everything else is the real code.
"""
import io
import json
import os
import subprocess
import sys

import pytest

from ckanext.datagovuk import output
from ckanext.datagovuk.transfer.stream import Child, watch_reading


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def printer(verbosity=output.NORMAL, tty=False):
    stream, clock = io.StringIO(), Clock()
    return output.Progress(verbosity, stream=stream, tty=tty,
                           clock=clock), stream, clock


def run_steps(progress, clock):
    with progress.step("transfer") as step:
        progress("per-table detail")
        for second in range(1, 31):
            clock.now = second
            progress.live(f"transfer: {second} MiB")
        step.result = "30 MiB"
    with progress.step("migrate"):
        with progress.step("schema upgrade") as inner:
            progress("core 0123 (0.0 s)")
            inner.result = "109 revisions"
        clock.now = 31


def test_default_prints_a_line_per_step_and_live_lines_at_most_every_10_s():
    progress, stream, clock = printer()
    run_steps(progress, clock)
    lines = stream.getvalue().splitlines()
    assert lines == ["transfer ...", "transfer: 10 MiB", "transfer: 20 MiB",
                     "transfer: 30 MiB", "migrate ..."]


def test_verbose_adds_the_detail_and_the_inner_steps():
    progress, stream, clock = printer(output.VERBOSE)
    run_steps(progress, clock)
    text = stream.getvalue()
    for line in ("per-table detail", "core 0123 (0.0 s)",
                 "schema upgrade ...", "transfer: done in 30.00 s"):
        assert line in text, text


def test_quiet_prints_nothing_while_it_runs():
    progress, stream, clock = printer(output.QUIET)
    run_steps(progress, clock)
    assert stream.getvalue() == ""


def test_on_a_terminal_the_live_line_is_rewritten_in_place():
    progress, stream, clock = printer(tty=True)
    run_steps(progress, clock)
    text = stream.getvalue()
    assert text.count("\n") == 2            # the two steps' lines
    assert "\r\x1b[Ktransfer: 30 MiB" in text
    assert "\r\x1b[Kmigrate: schema upgrade" in text
    progress.clear_live()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_the_result_is_one_json_object_of_the_top_level_steps():
    progress, _, clock = printer()
    run_steps(progress, clock)
    result = output.Result(steps=progress.steps, fields={"database": "ckan"},
                           next_steps=["ckan -c /etc/ckan.ini search-index "
                                       "rebuild"])
    shown = json.loads(result.to_json())
    assert shown["ok"] is True and shown["error"] is None
    assert shown["database"] == "ckan"
    assert [step["name"] for step in shown["steps"]] == ["transfer",
                                                         "migrate"]
    assert shown["steps"][0] == {"name": "transfer", "seconds": 30.0,
                                 "result": "30 MiB"}


def test_the_text_ends_with_the_table_the_total_and_the_next_steps():
    progress, _, clock = printer()
    run_steps(progress, clock)
    text = output.Result(steps=progress.steps, text="report",
                         next_steps=["do this"], notes=["a note"]).to_text()
    lines = text.splitlines()
    assert lines[0] == "report"
    assert lines[2].startswith("transfer: done in 30.00 s")
    assert lines[2].endswith("30 MiB")
    assert lines[3].startswith("migrate: done in 1.00 s")
    assert lines[4].startswith("total: 31.0 s") and lines[4].endswith("ok")
    assert lines[5:] == ["Next:", "  do this"]
    verbose = output.Result(steps=progress.steps, next_steps=["do this"],
                            notes=["a note"]).to_text(verbose=True)
    assert "  schema upgrade: done in" in verbose and "  a note" in verbose


def test_a_failed_step_is_recorded_as_failed():
    progress, _, clock = printer()
    with pytest.raises(RuntimeError):
        with progress.step("verify"):
            clock.now = 2
            raise RuntimeError("boom")
    result = output.Result(ok=False, steps=progress.steps, error="boom")
    assert result.to_dict()["steps"] == [
        {"name": "verify", "seconds": 2.0, "result": "failed"}]
    assert "verify: failed after 2.00 s" in result.to_text()


def test_transfer_text_gives_bytes_rate_and_time_left():
    assert output.transfer_text(30 << 20, 10.0, 60 << 20) == \
        "30.0 MiB of 60.0 MiB, 3.0 MiB/s, 10 s left"
    assert output.transfer_text(30 << 20, 10.0) == "30.0 MiB, 3.0 MiB/s"


def test_a_program_reading_a_local_dump_shows_bytes_of_the_total(tmp_path):
    # A real reader (cat) of a real file, watched through /proc.
    dump = tmp_path / "site.dump"
    dump.write_bytes(os.urandom(4 << 20))
    # One process reads it all, then lingers, as pg_restore does while it
    # builds the indexes.
    reader = Child("reader", [sys.executable, "-I", "-c",
                              f"open({str(dump)!r}, 'rb').read(); "
                              "import time; time.sleep(2.5)"])
    progress, stream, _ = printer(tty=True)
    watch_reading(reader, dump.stat().st_size, progress, "restore",
                  interval=0.5)
    assert reader.process.returncode == 0
    assert "restore: 4.0 MiB of 4.0 MiB" in stream.getvalue()


def test_progress_goes_to_the_stream_it_is_given_so_stdout_stays_json():
    # What --json does: progress on stderr, one object on stdout.
    code = ("import sys; from ckanext.datagovuk import output; "
            "p = output.Progress(stream=sys.stderr); "
            "s = p.step('x'); s.__enter__(); s.__exit__(None, None, None); "
            "print(output.Result(steps=p.steps).to_json())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout)["steps"][0]["name"] == "x"
    assert done.stderr == "x ...\n"
