"""The ``datagovuk`` group is reachable through ckan, IClick and paster."""
import json

import pytest

from ckanext.datagovuk.cli import datagovuk
from ckanext.datagovuk.tests.conftest import (ckan_datagovuk, one_line_error,
                                              paster_datagovuk, run_command,
                                              run_sql)


def command_names():
    return sorted(datagovuk.commands)


def assert_lists_every_command(help_text: str):
    for name in command_names():
        assert f"  {name} " in help_text, (name, help_text)


def after_usage_line(text: str) -> str:
    """Help text without its first line, which names the program."""
    return text.split("\n", 1)[1]


def test_ckan_click_command_entry_point_lists_the_group(ckan_db_url):
    result = ckan_datagovuk(["--help"], db_url=ckan_db_url)
    assert result.returncode == 0, result.stderr
    assert "Usage: ckan datagovuk" in result.stdout
    assert_lists_every_command(result.stdout)


@pytest.mark.parametrize("args", [["datagovuk", "--help"], ["datagovuk", "-h"],
                                  ["help", "datagovuk"], ["-h", "datagovuk"]],
                         ids=" ".join)
def test_paster_global_command_lists_the_group_from_any_directory(args):
    result = run_command(["paster", *args], cwd="/", env={"CKAN_INI": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: paster datagovuk [OPTIONS] "
                                    "COMMAND"), result.stdout
    assert_lists_every_command(result.stdout)
    assert result.stderr == ""


def test_paster_command_help_takes_h_as_ckan_does(ckan_db_url):
    by_paster = run_command(["paster", "datagovuk", "import", "-h"], cwd="/")
    by_ckan = ckan_datagovuk(["import", "-h"], db_url=ckan_db_url)
    assert by_paster.returncode == by_ckan.returncode == 0
    assert by_paster.stdout.startswith(
        "Usage: paster datagovuk import [OPTIONS] SOURCE")
    assert after_usage_line(by_paster.stdout) == after_usage_line(by_ckan.stdout)


def test_paster_without_a_command_is_a_usage_error_as_with_ckan(ckan_db_url):
    by_paster = run_command(["paster", "datagovuk"], cwd="/",
                            env={"CKAN_INI": ""})
    by_ckan = ckan_datagovuk([], db_url=ckan_db_url)
    assert by_paster.returncode == by_ckan.returncode == 2
    assert by_paster.stdout == by_ckan.stdout == ""
    assert by_paster.stderr.startswith("Usage: paster datagovuk [OPTIONS] "
                                       "COMMAND")
    assert_lists_every_command(by_paster.stderr)
    assert after_usage_line(by_paster.stderr) == after_usage_line(by_ckan.stderr)


def test_paster_lists_datagovuk_among_its_commands():
    result = run_command(["paster", "help"], cwd="/")
    assert "datagovuk" in result.stdout


@pytest.mark.parametrize("name", sorted(datagovuk.commands))
def test_paster_without_config_is_a_usage_error(name):
    env = {"CKAN_INI": ""}
    result = run_command(["paster", "datagovuk", name], cwd="/", env=env)
    assert result.returncode == 2
    assert "no CKAN config" in one_line_error(result)


def test_paster_with_a_missing_config_file_is_a_usage_error():
    result = run_command(["paster", "datagovuk", "status", "-c",
                          "/nonexistent/ckan.ini"], cwd="/")
    assert result.returncode == 2
    assert "/nonexistent/ckan.ini does not exist" in one_line_error(result)


def test_paster_with_an_unreachable_database_says_so_in_one_line():
    unreachable = "postgresql://ckan_default:secret@127.0.0.1:1/ckan"
    result = paster_datagovuk(["status"], db_url=unreachable)
    message = one_line_error(result)
    assert "cannot connect to the database" in message
    assert "secret" not in message


@pytest.mark.ckan_config("ckan.plugins", "datagovuk")
@pytest.mark.usefixtures("with_plugins")
def test_iclick_registers_the_same_group():
    from ckan.plugins import PluginImplementations, IClick
    groups = [command for plugin in PluginImplementations(IClick)
              for command in plugin.get_commands()]
    assert datagovuk in groups


# Usage errors found after click's parse: each is one line and exit status 2
# before anything runs ({dump} is an existing file, never read).
USAGE_ERRORS = {
    "drop-old without replace": (
        ["import", "{dump}", "--drop-old"],
        "--drop-old only makes sense with --replace"),
    "plan with drop-old without replace": (
        ["import", "{dump}", "--plan", "--drop-old"],
        "--drop-old only makes sense with --replace"),
    "migrate --from, drop-old without replace": (
        ["migrate", "--from", "{dump}", "--drop-old"],
        "--drop-old only makes sense with --replace"),
    "no such file": (["import", "/nonexistent/old.dump"], "no such file"),
    "neither file nor host": (["import", "old host"],
                              "not a file and not [user@]host"),
    "remote file without a path": (["import", "oldhost:"],
                                   "no file path after the colon"),
    "keep-dump of a local file": (
        ["import", "{dump}", "--keep-dump", "/tmp/copy.dump"],
        "--keep-dump keeps a copy of a remote source"),
    "compress for a local file": (
        ["import", "{dump}", "--compress", "1"],
        "--compress sets the remote pg_dump's compression"),
    "remote-format for a local file": (
        ["import", "{dump}", "--remote-format", "directory"],
        "--remote-format sets how the remote pg_dump dumps"),
    "remote-tmpdir without directory format": (
        ["import", "co@oldhost", "--remote-tmpdir", "/srv"],
        "--remote-tmpdir is where the remote host writes"),
    "remote-tmpdir with one job": (
        ["import", "co@oldhost", "--remote-format", "directory", "--jobs",
         "1", "--remote-tmpdir", "/srv"],
        "--remote-tmpdir is where the remote host writes"),
    "ssh option without a value": (
        ["import", "co@oldhost", "--ssh-option", "Compression"],
        "give it as Key=Value"),
    "host key checking off": (
        ["import", "co@oldhost", "--ssh-option", "StrictHostKeyChecking=no"],
        "host key checking stays on"),
    "password in --remote-db": (
        ["import", "co@oldhost", "--remote-db", "dbname=ckan password=x"],
        "--remote-db must not hold a password"),
    "keep-dump in a missing folder": (
        ["import", "co@oldhost", "--keep-dump", "/nonexistent/old.dump"],
        "--keep-dump /nonexistent/old.dump: directory /nonexistent does not "
        "exist"),
    "missing identity file": (
        ["import", "co@oldhost", "--identity", "/nonexistent/id_ed25519"],
        "identity file /nonexistent/id_ed25519 does not exist"),
    "admin URL variable not set": (
        ["import", "{dump}", "--admin-url-env", "DATAGOVUK_TEST_UNSET"],
        "--admin-url-env DATAGOVUK_TEST_UNSET: that environment variable is "
        "not set"),
    "migrate --from with --dry-run": (
        ["migrate", "--from", "{dump}", "--dry-run"],
        "--dry-run does not go with --from"),
    "missing migrations folder": (
        ["migrate", "--migrations-dir", "/nonexistent/migrations"],
        "'/nonexistent/migrations' does not exist"),
}


def server_state(admin_url: str, target: str):
    """The databases of the server and the tables of the target."""
    return (run_sql(admin_url, "SELECT datname FROM pg_database ORDER BY 1"),
            run_sql(target, "SELECT schemaname, tablename FROM pg_tables "
                            "WHERE schemaname NOT IN ('pg_catalog', "
                            "'information_schema') ORDER BY 1, 2"))


def usage_case(case: str, tmp_path, make_database, pg_admin_url):
    """The case's arguments (with an empty dump file), its message, a new
    target database and the server's state before."""
    args, expected = USAGE_ERRORS[case]
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"")
    target = make_database()
    return ([arg.format(dump=dump) for arg in args], expected, target,
            server_state(pg_admin_url, target))


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_error_found_after_the_parse_exits_2_before_anything_runs(
        case, make_database, pg_admin_url, tmp_path):
    args, expected, target, before = usage_case(case, tmp_path,
                                                make_database, pg_admin_url)
    result = paster_datagovuk(args, db_url=target)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in one_line_error(result)
    assert result.stdout == ""
    assert server_state(pg_admin_url, target) == before


def test_drop_old_without_replace_is_a_usage_error_through_ckan_too(
        make_database, pg_admin_url, tmp_path):
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"")
    target = make_database()
    before = server_state(pg_admin_url, target)
    result = ckan_datagovuk(["import", str(dump), "--drop-old"], db_url=target)
    assert result.returncode == 2
    assert "--drop-old only makes sense with --replace" in \
        one_line_error(result)
    assert result.stdout == ""
    assert server_state(pg_admin_url, target) == before


# --- -v, -q and --json: every command, one shape ------------------------------

@pytest.mark.parametrize("name", sorted(datagovuk.commands))
def test_every_command_takes_the_output_options_listed_in_their_group(name):
    import click

    command = datagovuk.commands[name]
    with click.Context(command, info_name=name) as ctx:
        help_text = command.get_help(ctx)
    names = {param.name for param in command.params}
    assert {"verbose", "quiet", "as_json"} <= names
    output_part = help_text.split("Output options:")[1]
    for option in ("-v, --verbose", "-q, --quiet", "--json"):
        assert option in output_part, help_text


def test_migrate_help_groups_its_own_the_import_and_the_output_options():
    import click

    command = datagovuk.commands["migrate"]
    with click.Context(command, info_name="migrate") as ctx:
        help_text = command.get_help(ctx)
    own, rest = help_text.split("Migrate options:")[1].split(
        "Import options:")
    imported, output_part = rest.split("Output options:")
    assert "--resolve-email-clash" in own and "--remote-db" not in own
    assert "--remote-db" in imported and "--dry-run" not in imported
    assert "--json" in output_part and "--jobs" not in output_part


@pytest.mark.parametrize("name", sorted(datagovuk.commands))
def test_json_usage_error_is_one_object_on_stdout_and_exit_2(name,
                                                             make_database):
    result = ckan_datagovuk([name, "--json", "--no-such-option"],
                            db_url=make_database())
    assert result.returncode == 2, result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"] is False and shown["steps"] == []
    assert "--no-such-option" in shown["error"]
    assert "--no-such-option" in one_line_error(result)


@pytest.mark.parametrize("case", ["drop-old without replace",
                                  "migrate --from with --dry-run",
                                  "password in --remote-db"])
def test_json_usage_error_found_after_the_parse_is_one_object_too(
        case, make_database, pg_admin_url, tmp_path):
    args, expected, target, before = usage_case(case, tmp_path,
                                                make_database, pg_admin_url)
    result = paster_datagovuk([*args, "--json"], db_url=target)
    assert result.returncode == 2, result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"] is False and expected in shown["error"]
    assert expected in one_line_error(result)
    assert server_state(pg_admin_url, target) == before


def test_verbose_and_quiet_together_are_a_usage_error(make_database):
    result = paster_datagovuk(["status", "-v", "-q"], db_url=make_database())
    assert result.returncode == 2
    assert "-v and -q" in one_line_error(result)


def test_status_json_is_the_common_shape_with_the_status_fields(ckan_db_url):
    result = ckan_datagovuk(["status", "--json"], db_url=ckan_db_url)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"] is True and shown["error"] is None
    assert isinstance(shown["steps"], list)
    assert "database" in shown and "next_command" in shown


def test_a_plan_that_predicts_a_refusal_exits_non_zero(make_database,
                                                       pg_admin_url,
                                                       tmp_path):
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"")
    target = make_database()
    run_sql(target, "CREATE TABLE marker (note text)")
    before = server_state(pg_admin_url, target)
    result = paster_datagovuk(["import", str(dump), "--plan"], db_url=target)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refuse: " in result.stdout
    assert "the plan stops at a refusal" in one_line_error(result)
    shown = json.loads(paster_datagovuk(
        ["import", str(dump), "--plan", "--json"], db_url=target).stdout)
    assert shown["ok"] is False and any("refuse: " in line
                                        for line in shown["plan"])
    assert server_state(pg_admin_url, target) == before


def test_import_json_is_one_object_with_its_steps_and_progress_on_stderr(
        old_site_dump, make_database):
    target = make_database()
    result = paster_datagovuk(["import", old_site_dump, "--json"],
                              db_url=target)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"] is True and shown["error"] is None
    assert [step["name"] for step in shown["steps"]] == [
        "checks", "restore", "verify", "swap"]
    assert all(step["seconds"] >= 0 for step in shown["steps"])
    assert shown["row_counts"]["package"] > 0
    assert "restore ..." in result.stderr
    quiet = paster_datagovuk(["import", old_site_dump, "--replace",
                              "--drop-old", "-q"], db_url=target)
    assert quiet.returncode == 0, quiet.stderr
    # -q: no line as each step starts, the final table only.
    assert "restore ..." not in quiet.stdout
    assert "restore: done in " in quiet.stdout
