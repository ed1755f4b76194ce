"""The private loopback sshd: key login only, host key checking on."""
import os
import socket
import subprocess

import pytest

from ckanext.datagovuk.testing import localssh


@pytest.fixture(scope="module")
def server():
    server = localssh.start()
    yield server
    server.stop()


def ssh(*args, timeout=30):
    return subprocess.run(["ssh", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_runs_a_command_with_its_options_as_the_current_user(server):
    result = ssh(*server.ssh_options(), server.destination, "id -un; pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == server.user


def test_the_ssh_config_alias_reaches_it(server):
    result = ssh("-F", server.ssh_config_file, server.alias, "echo via-alias")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "via-alias"


def test_scp_copies_a_file(server, tmp_path):
    copy = tmp_path / "hostname"
    result = subprocess.run(["scp", "-q", "-F", server.ssh_config_file,
                             f"{server.alias}:/etc/hostname", str(copy)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert copy.read_text() == open("/etc/hostname").read()


def test_host_key_checking_stays_on(server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = [option.replace(server.known_hosts_file, str(empty))
               for option in server.ssh_options()]
    result = ssh(*options, server.destination, "true")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_another_key_is_refused(server, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(other)], check=True)
    options = [str(other) if option == server.identity_file else option
               for option in server.ssh_options()]
    result = ssh(*options, server.destination, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_kill_sessions_cuts_a_running_command(server):
    client = subprocess.Popen(
        ["ssh", *server.ssh_options(), server.destination,
         "echo started; sleep 30"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "started"
        assert server.kill_sessions()
        assert client.wait(timeout=15) == 255
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_stop_closes_the_port_and_removes_its_files():
    server = localssh.start()
    port, directory = server.port, server.directory
    server.stop()
    assert not os.path.exists(directory)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
