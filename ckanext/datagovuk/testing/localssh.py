"""A private, throw-away ssh server on loopback for tests, the demo and the
benchmark (what ``localpg`` is for PostgreSQL).

``start()`` generates a host key and a client key pair in a fresh temporary
directory, writes an ``sshd_config`` that listens on 127.0.0.1 on a free port
and accepts only that client key, starts ``/usr/sbin/sshd -D`` and waits until
the port answers.  Host key checking stays on: the server's host key is
written to a ``known_hosts`` file that the client options and the generated
``ssh_config`` point at.  ``stop()`` ends the server and removes everything.

Remote commands run as the login user (the current user; root is allowed in
with the key only), in that user's login environment, with no environment
passed from the client.

    python -m ckanext.datagovuk.testing.localssh run -- CMD [ARGS...]

starts a server, runs CMD with ``DATAGOVUK_SSH_CONFIG`` (an ssh_config that
defines the host ``oldsite``), ``DATAGOVUK_SSH_PORT``,
``DATAGOVUK_SSH_IDENTITY`` and ``DATAGOVUK_SSH_KNOWN_HOSTS`` set, then stops it.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from ckanext.datagovuk.testing import localpg

SSHD = os.environ.get("DATAGOVUK_SSHD", "/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
HOST_ALIAS = "oldsite"
LOOPBACK = "127.0.0.1"


def _wait_for_port(port: int, process: subprocess.Popen, log: str,
                   timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {process.returncode}: "
                               f"{localpg.tail(log)}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
                # sshd speaks first: a banner means it is really serving.
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port}: {localpg.tail(log)}")


@dataclass
class SshServer:
    directory: str
    port: int
    user: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def identity_file(self) -> str:
        return os.path.join(self.directory, "client_key")

    @property
    def known_hosts_file(self) -> str:
        return os.path.join(self.directory, "known_hosts")

    @property
    def ssh_config_file(self) -> str:
        return os.path.join(self.directory, "ssh_config")

    @property
    def log_file(self) -> str:
        return os.path.join(self.directory, "sshd.log")

    @property
    def alias(self) -> str:
        return HOST_ALIAS

    @property
    def destination(self) -> str:
        """``user@127.0.0.1``, for use with ``ssh_options()``."""
        return f"{self.user}@{self.host}"

    def ssh_options(self) -> list[str]:
        """Options for ``ssh`` that reach this server with the client key and
        strict host key checking: ``ssh *options user@127.0.0.1 CMD``."""
        return ["-p", str(self.port), "-i", self.identity_file,
                "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_file}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes"]

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        if self.process is None:
            return []
        return _children(self.process.pid)

    def kill_sessions(self) -> list[int]:
        """Kill every open connection's server side, as a dropped network
        link would: the clients see the connection closed mid-stream."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill_sessions()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "SshServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _keygen(path: str, comment: str) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", path], check=True, capture_output=True, text=True)


def _write(path: str, text: str, mode: int = 0o600) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def start(parent: str | None = None) -> SshServer:
    """Start a private sshd on a free loopback port; see the module doc."""
    directory = tempfile.mkdtemp(prefix="datagovuk-ssh-", dir=parent)
    os.chmod(directory, 0o700)
    user = pwd.getpwuid(os.geteuid()).pw_name
    server = SshServer(directory=directory, port=localpg.free_port(), user=user)
    try:
        host_key = os.path.join(directory, "host_key")
        _keygen(host_key, "datagovuk-localssh-host")
        _keygen(server.identity_file, "datagovuk-localssh-client")
        authorized_keys = os.path.join(directory, "authorized_keys")
        shutil.copyfile(server.identity_file + ".pub", authorized_keys)
        os.chmod(authorized_keys, 0o600)
        with open(host_key + ".pub") as handle:
            key_type, key_data = handle.read().split()[:2]
        _write(server.known_hosts_file,
               f"[{LOOPBACK}]:{server.port} {key_type} {key_data}\n", 0o644)
        config = os.path.join(directory, "sshd_config")
        _write(config, "\n".join([
            f"ListenAddress {LOOPBACK}:{server.port}",
            f"HostKey {host_key}",
            f"PidFile {os.path.join(directory, 'sshd.pid')}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # We run as root in containers; key-only root login is enough.
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            # The key files live in a temporary directory, not ~/.ssh.
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 50",
            # scp (SFTP since OpenSSH 9) works as against a real host.
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ]))
        _write(server.ssh_config_file, "\n".join([
            f"Host {HOST_ALIAS}",
            f"    HostName {LOOPBACK}",
            f"    Port {server.port}",
            f"    User {user}",
            f"    IdentityFile {server.identity_file}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {server.known_hosts_file}",
            "    GlobalKnownHostsFile /dev/null",
            # Known as 127.0.0.1 in known_hosts, reached through the alias.
            f"    HostKeyAlias [{LOOPBACK}]:{server.port}",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "",
        ]), 0o644)
        if os.geteuid() == 0:
            # sshd's privilege separation directory; Debian's service makes it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        server.process = subprocess.Popen(
            [SSHD, "-D", "-f", config, "-E", server.log_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        _wait_for_port(server.port, server.process, server.log_file)
    except BaseException:
        server.stop()
        raise
    return server


def environment(server: SshServer) -> dict[str, str]:
    return {
        "DATAGOVUK_SSH_CONFIG": server.ssh_config_file,
        "DATAGOVUK_SSH_HOST": server.destination,
        "DATAGOVUK_SSH_PORT": str(server.port),
        "DATAGOVUK_SSH_IDENTITY": server.identity_file,
        "DATAGOVUK_SSH_KNOWN_HOSTS": server.known_hosts_file,
    }


def run(command: list[str]) -> int:
    server = start()
    return localpg.run_with(
        environment(server), server.stop,
        f"private sshd on {server.destination} port {server.port} "
        f"(ssh -F {server.ssh_config_file} {HOST_ALIAS})", command)


def main(argv: list[str] | None = None) -> int:
    return localpg.main_for(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
