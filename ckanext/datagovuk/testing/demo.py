"""``make demo``: the whole move on an embedded default.

Inside a private PostgreSQL cluster and Solr (``localpg run -- localsolr
run``) it generates an old data.gov.uk site as the database of a "remote
host" (a loopback sshd), writes a CKAN config for the new site, and then
runs, as an operator would, each command of the run-sheet, printing the
command line before its output.  It ends with what an anonymous visitor's
``package_search`` finds, next to the database's public datasets.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

from ckanext.datagovuk import db, output
from ckanext.datagovuk.testing import localssh, oldsite

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.path.dirname(os.path.abspath(sys.executable))
OLD_DATABASE = "ckan_old"
NEW_DATABASE = "ckan"


def write_config(path: str, database_url: str, site_id: str,
                 extra: dict[str, str]) -> None:
    """The new site's CKAN config: test.ini's settings with this database,
    and ``extra`` settings added to [app:main]."""
    with open(os.path.join(ROOT, "test.ini")) as handle:
        lines = handle.read().splitlines()
    settings = {
        "sqlalchemy.url": database_url,
        "ckan.site_id": site_id,
        "ckan.site_url": "http://localhost:5000",
    }
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        out.append(f"{key} = {settings[key]}" if key in settings else line)
        if line.strip() == "[app:main]":
            out += [f"{name} = {value}" for name, value in extra.items()]
    out = [line.replace("%(here)s", ROOT) for line in out]
    with open(path, "w") as handle:
        handle.write("\n".join(out) + "\n")


def run(argv: list[str], env: dict[str, str], step: output.Step,
        may_fail: bool = False) -> int:
    """Run one command as an operator would, after printing its command
    line; its exit status becomes ``step``'s result."""
    shown = " ".join(shlex.quote(arg) for arg in argv)
    print(f"$ {shown}", flush=True)
    program = os.path.join(BIN, argv[0]) if os.path.exists(
        os.path.join(BIN, argv[0])) else argv[0]
    result = subprocess.run([program, *argv[1:]], env=env)
    step.result = f"exit {result.returncode}"
    if result.returncode != 0 and not may_fail:
        raise SystemExit(result.returncode)
    return result.returncode


def searchable(ini: str, env: dict[str, str]) -> dict:
    """What an anonymous package_search finds on the new site, and how
    many public datasets its database has."""
    result = subprocess.run([sys.executable, "-m", "ckanext.datagovuk.testing."
                             "package_search_count", ini],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"package_search failed: {result.stderr.strip()}")
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"== Is the new site searchable? An anonymous package_search finds "
          f"{counts['package_search']} datasets; the database has "
          f"{counts['public_datasets']} public datasets")
    return counts


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=2000,
                        help="size of the generated old site (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="the generator's and the commands' detail")
    options = parser.parse_args(args)

    base_url = os.environ.get("CKAN_SQLALCHEMY_URL")
    if not base_url:
        raise SystemExit("run through `make demo` (it starts a private "
                         "PostgreSQL and sets CKAN_SQLALCHEMY_URL)")
    # The demo's own steps: its table at the end, no line as each starts
    # (the command line printed is that).
    progress = output.Progress(output.QUIET)
    verbose = ["-v"] if options.verbose else []
    old_url = db.with_database(base_url, OLD_DATABASE)
    new_url = db.with_database(base_url, NEW_DATABASE)
    old = db.parse(old_url)

    with progress.step("generate the old site") as step:
        print(f"== The old site: {options.datasets} datasets, generated "
              f"into {db.safe_url(old_url)} (the remote host's database)")
        db.create_database(old_url, os.environ.get("DATAGOVUK_PG_ADMIN_URL"))
        counts = oldsite.generate(old_url, datasets=options.datasets,
                                  seed=options.seed,
                                  progress=print if options.verbose
                                  else None)
        step.result = (f"{counts.get('package', 0)} datasets, "
                       f"{sum(counts.values())} rows")

    with tempfile.TemporaryDirectory(prefix="datagovuk-demo-") as workdir, \
            localssh.start() as remote:
        ini = os.path.join(workdir, "ckan.ini")
        # migrate --from promotes the configured sysadmins before the swap.
        write_config(ini, new_url.render_as_string(hide_password=False),
                     oldsite.KNOWN_CASES.site_user,
                     {"ckanext.datagovuk.sysadmins":
                      oldsite.KNOWN_CASES.sysadmins[0]})

        # The config file names the database; CKAN_SQLALCHEMY_URL would win.
        env = {key: value for key, value in os.environ.items()
               if key != "CKAN_SQLALCHEMY_URL"}
        env["CKAN_INI"] = ini
        remote_db = (f"host={old.host} port={old.port} "
                     f"dbname={old.database} user={old.username}")
        print(f"== The move, from {remote.destination} (sshd on port "
              f"{remote.port}) into {db.safe_url(new_url)}, config {ini}")
        source = ["--from", remote.alias, "--ssh-config",
                  remote.ssh_config_file, "--remote-db", remote_db]
        # The plan asks the old database (read only) what the move would
        # stop for: it names the decision and exits 1.
        with progress.step("migrate --from --plan") as step:
            run(["paster", "datagovuk", "migrate", *source, "--plan",
                 "-c", ini], env, step, may_fail=True)
        print("== The plan found what the move would stop for before "
              "transferring anything: the generated site, like the real "
              "one, has two kept users sharing an email (ignoring case), "
              "which CKAN 2.12 forbids. The option it names settles it.")
        with progress.step("migrate --from --resolve-email-clash") as step:
            run(["paster", "datagovuk", "migrate", *source, *verbose,
                 "--resolve-email-clash", "keep-oldest", "-c", ini], env,
                step)
        with progress.step("promote --demoted") as step:
            run(["ckan", "-c", ini, "datagovuk", "promote", "--demoted"],
                env, step)
        with progress.step("status") as step:
            run(["ckan", "-c", ini, "datagovuk", "status"], env, step)
        with progress.step("package_search") as step:
            found = searchable(ini, env)
            step.result = (f"{found['package_search']} of "
                           f"{found['public_datasets']} public datasets")
    print("== Demo finished: the old site imported, migrated, verified, "
          "indexed and its sysadmins promoted again, in these steps:")
    print(output.Result(steps=progress.steps).table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
