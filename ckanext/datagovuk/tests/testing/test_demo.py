"""``make demo``: what it prints, by default, fits on a screen or two and
ends with the table of its steps.  It runs as ``make demo`` runs it, in a
private PostgreSQL and Solr of its own."""
import subprocess
import sys

PYTHON = sys.executable


def test_the_demo_prints_at_most_80_lines_and_ends_with_its_steps():
    result = subprocess.run(
        [PYTHON, "-m", "ckanext.datagovuk.testing.localpg", "run", "--",
         PYTHON, "-m", "ckanext.datagovuk.testing.localsolr", "run", "--",
         PYTHON, "-m", "ckanext.datagovuk.testing.demo", "--datasets", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert len(lines) <= 80, "\n".join(lines)
    # Nothing per revision or per table, one timing per command.
    assert not any(line.endswith(" s)") and " core " in line
                   for line in lines)
    assert lines[-1].startswith("total: ") and lines[-1].endswith(" ok")
    for step in ("generate the old site", "migrate --from --plan",
                 "promote --demoted", "status"):
        assert sum(line.startswith(f"{step}: done in ")
                   for line in lines) == 1, step
