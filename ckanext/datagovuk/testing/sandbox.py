"""``make sandbox``: an old site and a new CKAN config to try the commands by hand.

Inside a private PostgreSQL cluster and Solr (``localpg run``, ``localsolr
run``) it generates an old data.gov.uk site as the database of a "remote
host" (a loopback sshd), writes the new site's CKAN config, prints what to
type, and opens a shell with ``CKAN_INI`` and ``DATAGOVUK_FROM`` set.  The
cluster, the sshd and the config live as long as that shell: leaving it
removes everything.  ``--command`` runs one command in place of the shell.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from ckanext.datagovuk import db
from ckanext.datagovuk.testing import demo, localssh, oldsite

# Named by the process, so a sandbox can share a cluster (the tests do).
OLD_DATABASE = f"sandbox_old_{os.getpid()}"
NEW_DATABASE = f"sandbox_new_{os.getpid()}"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=300,
                        help="size of the generated old site (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--command", help="run this shell command in the "
                        "sandbox instead of opening an interactive shell")
    return parser.parse_args(argv)


def _generate_old_site(base_url: str, options: argparse.Namespace):
    old_url = db.with_database(base_url, OLD_DATABASE)
    db.create_database(old_url, os.environ.get("DATAGOVUK_PG_ADMIN_URL"))
    oldsite.generate(old_url, datasets=options.datasets, seed=options.seed)
    return db.parse(old_url)


def _source_options(remote: localssh.SshServer, old) -> str:
    """The options that name the old site, as words without spaces, so the
    shell's plain ``$DATAGOVUK_FROM`` splits them right."""
    remote_db = (f"postgresql://{old.username}@{old.host}:{old.port}/"
                 f"{old.database}")
    return " ".join(["--from", remote.alias, "--ssh-config",
                     remote.ssh_config_file, "--remote-db", remote_db])


def _welcome(ini: str, source: str) -> str:
    return "\n".join([
        f"Sandbox ready. CKAN_INI={ini}",
        "The old site is reachable as $DATAGOVUK_FROM; try:",
        '  ckan -c "$CKAN_INI" datagovuk status',
        '  ckan -c "$CKAN_INI" datagovuk migrate $DATAGOVUK_FROM --plan '
        '--resolve-email-clash keep-oldest',
        '  ckan -c "$CKAN_INI" datagovuk migrate $DATAGOVUK_FROM '
        "--resolve-email-clash keep-oldest",
        '  paster datagovuk status -c "$CKAN_INI"',
        "Leave the shell (exit) to remove the sandbox.",
        f"(DATAGOVUK_FROM={source})",
    ])


def _shell(env: dict[str, str], command: str | None) -> int:
    if command is not None:
        return subprocess.run(["bash", "-c", command], env=env).returncode
    return subprocess.run([os.environ.get("SHELL", "bash"), "-i"],
                          env=env).returncode


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    base_url = os.environ.get("CKAN_SQLALCHEMY_URL")
    if not base_url:
        raise SystemExit("run through `make sandbox` (it starts a private "
                         "PostgreSQL and sets CKAN_SQLALCHEMY_URL)")
    old = _generate_old_site(base_url, options)
    # The new site starts with an empty database, as a fresh server would.
    new_url = db.with_database(base_url, NEW_DATABASE)
    db.create_database(new_url, os.environ.get("DATAGOVUK_PG_ADMIN_URL"))
    with tempfile.TemporaryDirectory(prefix="datagovuk-sandbox-") as workdir, \
            localssh.start() as remote:
        ini = os.path.join(workdir, "ckan.ini")
        demo.write_config(ini, new_url.render_as_string(hide_password=False),
                          oldsite.KNOWN_CASES.site_user,
                          {"ckanext.datagovuk.sysadmins":
                           oldsite.KNOWN_CASES.sysadmins[0]})
        source = _source_options(remote, old)
        # The config file names the database; CKAN_SQLALCHEMY_URL would win.
        env = {key: value for key, value in os.environ.items()
               if key != "CKAN_SQLALCHEMY_URL"}
        env.update(CKAN_INI=ini, DATAGOVUK_FROM=source,
                   PATH=demo.BIN + os.pathsep + env.get("PATH", ""))
        print(_welcome(ini, source), flush=True)
        return _shell(env, options.command)


if __name__ == "__main__":
    sys.exit(main())
