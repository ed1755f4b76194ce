"""``--plan``: the programs an import would run, as shell lines; runs
nothing and changes nothing."""
from __future__ import annotations

import shlex

from ckanext.datagovuk.transfer.options import (DEFAULT_COMPRESSION,
                                                ImportOptions)
from ckanext.datagovuk.transfer.remote import (Remote, quoted,
                                               remote_zstd_command)
from ckanext.datagovuk.transfer.restore import restore_args
from ckanext.datagovuk.transfer.sources import Source
from ckanext.datagovuk.transfer.staging import (Staging, backup_name,
                                                inspect_target)
from ckanext.datagovuk.transfer.stream import silent


def plan_lines(source: Source, target_url, options: ImportOptions
               ) -> list[str]:
    """libpq reads the connection (password included) from the
    environment, shown here with the password masked."""
    staging = Staging(target_url, options.admin_url, silent)
    remote = Remote(source, options)
    target = staging.target_url
    lines = [f"CREATE DATABASE {staging.name} (staging, as "
             f"{target.username})"]
    lines += _load_lines(source, options, staging, remote)
    lines.append(f"verify that {staging.name} is a CKAN database")
    lines.append(_swap_line(staging, options))
    return lines


def _load_lines(source: Source, options: ImportOptions, staging: Staging,
                remote: Remote) -> list[str]:
    target = staging.target_url
    env = (f"PGHOST={target.host} PGPORT={target.port} "
           f"PGUSER={target.username}"
           + (" PGPASSWORD=***" if target.password else ""))
    restore = quoted(restore_args(staging.name, None, options.jobs))
    if remote.directory_route:
        spool = shlex.quote(options.keep_dump or "$TMPDIR/<dump>")
        return [f"mkdir {spool}; {remote.shell_line()} | tar -x "
                f"--ignore-zeros -f - -C {spool}",
                f"{env} {restore} {spool}"]
    if not source.is_remote:
        return [f"{env} {restore} {shlex.quote(source.path)}   "
                "(or psql -f for a plain SQL dump)"]
    fetch = remote.shell_line()
    tee = (f" | tee {shlex.quote(options.keep_dump)}"
           if options.keep_dump else "")
    if options.jobs > 1:
        stream = quoted(restore_args(staging.name)
                        + ["--section=pre-data", "--section=data"])
        lines = [f"{fetch}{tee} | {env} {stream}   "
                 "(or psql for a plain SQL dump)",
                 f"{env} {restore} --section=post-data "
                 "$TMPDIR/<the dump's head: its table of contents>"]
    else:
        lines = [f"{fetch}{tee} | {env} {restore}   "
                 "(or psql for a plain SQL dump)"]
    if remote.zstd_wanted:
        lines.append(
            "if both hosts have zstd: pg_dump -Fc -Z0 ... | "
            f"{remote_zstd_command()} there and zstd -d here, in "
            f"place of pg_dump -Z{DEFAULT_COMPRESSION}")
    return lines


def _swap_line(staging: Staging, options: ImportOptions) -> str:
    state = inspect_target(staging.target_url)
    target = staging.target
    rename = f"ALTER DATABASE {staging.name} RENAME TO {target}"
    if not state.exists:
        return f"swap: {rename}"
    if state.empty:
        return f"swap: DROP DATABASE {target} (empty); {rename}"
    if not options.replace:
        return (f"refuse: {target} has {state.tables} tables "
                "and --replace was not given")
    old = ("DROP DATABASE " + target if options.drop_old
           else f"ALTER DATABASE {target} RENAME TO {backup_name(target)}")
    return f"swap: {old}; {rename}"
