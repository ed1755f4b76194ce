"""``make sandbox``: the commands an operator types in it work as printed."""
import os
import subprocess
import sys



def test_the_printed_commands_run_against_the_old_site_and_new_config():
    # The command a user would type at the sandbox's prompt, run in its place.
    command = ('ckan -c "$CKAN_INI" datagovuk migrate $DATAGOVUK_FROM --plan'
               ' --resolve-email-clash keep-oldest'
               ' && echo "INI=$CKAN_INI"')
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.sandbox",
         "--datasets", "20", "--command", command],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Sandbox ready. CKAN_INI=" in result.stdout
    ini = result.stdout.split("INI=")[-1].strip()
    assert ini.endswith("ckan.ini")
    assert "oldsite" in result.stdout  # the plan names the source host
    assert not os.path.exists(ini), "leaving the sandbox removes its config"


def test_a_failing_command_gives_its_exit_status():
    result = subprocess.run(
        [sys.executable, "-m", "ckanext.datagovuk.testing.sandbox",
         "--datasets", "20", "--command", "exit 3"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stdout + result.stderr
