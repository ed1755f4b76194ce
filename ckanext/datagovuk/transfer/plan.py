"""``--plan``: the programs an import would run, as shell lines; runs
nothing and changes nothing."""
from __future__ import annotations

import os
import shlex

from ckanext.datagovuk.transfer.options import (DEFAULT_COMPRESSION,
                                                ImportOptions)
from ckanext.datagovuk.transfer.remote import Remote, quoted
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.plain import detect_format
from ckanext.datagovuk.transfer.restore import psql_args, restore_args
from ckanext.datagovuk.transfer.sources import Source
from ckanext.datagovuk.transfer.staging import (Staging, backup_name,
                                                inspect_target)
from ckanext.datagovuk.transfer.stream import silent


REFUSE = "refuse: "


def refusal(lines: list[str]) -> str | None:
    """The refusal a plan predicts, if any (the run would stop there)."""
    for line in lines:
        if REFUSE in line:
            return line.split(REFUSE, 1)[1]
    return None


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
        return [_local_line(source, env, restore, staging)]
    if remote.zstd_wanted and remote.zstd_program is not None:
        # Planned as it will run when the remote host has zstd too.
        remote.has_zstd = True
    fetch = remote.shell_line()
    if remote.zstd_transport:
        fetch += f" | {shlex.quote(remote.zstd_program)} -d -q -c"
    tee = (f" | tee {shlex.quote(options.keep_dump)}"
           if options.keep_dump else "")
    # A remote database comes as a custom dump; a remote file may be
    # either, which only its first bytes tell.
    plain = ("   (or psql for a plain SQL dump)"
             if source.kind != Source.REMOTE_DATABASE else "")
    if options.jobs > 1:
        stream = quoted(restore_args(staging.name)
                        + ["--section=pre-data", "--section=data"])
        lines = [f"{fetch}{tee} | {env} {stream}{plain}",
                 f"{env} {restore} --section=post-data "
                 "$TMPDIR/<the dump's head: its table of contents>"]
    else:
        lines = [f"{fetch}{tee} | {env} {restore}{plain}"]
    if remote.zstd_transport:
        lines.append(f"(if the remote host has no zstd: pg_dump "
                     f"-Z{DEFAULT_COMPRESSION} there, no zstd -d here)")
    return lines


def _local_line(source: Source, env: str, restore: str,
                staging: Staging) -> str:
    """A local dump's load by its format, told by its first bytes."""
    path = shlex.quote(source.path)
    if os.path.isdir(source.path):
        return f"{env} {restore} {path}"
    try:
        with open(source.path, "rb") as handle:
            dump_format = detect_format(handle.read(65536))
    except (OSError, OperatorError):
        return f"{env} {restore} {path}   (or psql -f for a plain SQL dump)"
    if dump_format == "plain":
        return (f"{env} {quoted(psql_args(staging.name))} < {path}   "
                "(owner and privilege statements left out)")
    return f"{env} {restore} {path}"


def _swap_line(staging: Staging, options: ImportOptions) -> str:
    state = inspect_target(staging.target_url)
    target = staging.target
    rename = f"ALTER DATABASE {staging.name} RENAME TO {target}"
    if not state.exists:
        return f"swap: {rename}"
    if state.empty:
        return f"swap: DROP DATABASE {target} (empty); {rename}"
    if not options.replace:
        return (f"{REFUSE}{target} has {state.tables} tables "
                "and --replace was not given")
    old = ("DROP DATABASE " + target if options.drop_old
           else f"ALTER DATABASE {target} RENAME TO {backup_name(target)}")
    return f"swap: {old}; {rename}"
