"""The "remote host": ssh through the link, with the remote's host key
checked (real sshd, real PostgreSQL)."""
from __future__ import annotations

import shutil
import subprocess

from ckanext.datagovuk.testing import localssh
from ckanext.datagovuk.testing.bench.cli import parse_args
from ckanext.datagovuk.testing.bench.link import ThrottledProxy
from ckanext.datagovuk.testing.bench.run import Bench


def test_ssh_reaches_the_remote_through_the_link_with_host_key_checking(
        pg_admin_url, ckan_db_url, tmp_path):
    runner = Bench(parse_args(["--output", str(tmp_path)]),
                   pg_admin_url, ckan_db_url)
    runner.ssh = localssh.start(parent=runner.work)
    try:
        with ThrottledProxy(runner.ssh.port, lifetime=60) as proxy:
            runner.proxy = proxy
            runner.write_ssh_config()
            through_link = subprocess.run(
                runner.ssh_command("echo over-the-link", link=True),
                shell=True, capture_output=True, text=True, timeout=60)
            assert through_link.stdout.strip() == "over-the-link", \
                through_link.stderr
            assert proxy.bytes_forwarded > 0
            # A host key that is not the remote's is refused, link or not.
            other_key = tmp_path / "other_host_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-f", str(other_key)], check=True)
            key_type, key_data = other_key.with_suffix(".pub").read_text().split()[:2]
            with open(runner.ssh.known_hosts_file, "w") as handle:
                handle.write(f"[127.0.0.1]:{runner.ssh.port} {key_type} {key_data}\n")
            refused = subprocess.run(
                runner.ssh_command("echo over-the-link", link=True),
                shell=True, capture_output=True, text=True, timeout=60)
            assert refused.returncode == 255
            assert "host key" in refused.stderr.lower(), refused.stderr
    finally:
        runner.ssh.stop()
        shutil.rmtree(runner.work, ignore_errors=True)
