"""The remote side of an import from ``[user@]host`` or
``[user@]host:PATH``: what runs there over ssh (the ``remote_*.sh``
scripts beside this module, given the operator's values as arguments),
the version probe, how the dump is compressed on the way, and the remote
side's reason when it fails."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from ckanext.datagovuk import output
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.options import (DEFAULT_COMPRESSION,
                                                ImportOptions)
from ckanext.datagovuk.transfer.sources import Source
from ckanext.datagovuk.transfer.stream import (Child, Children, Echo,
                                               meaningful_line, pg_program)

# When both hosts have zstd and no level is asked for, the remote pg_dump
# writes -Z0 into zstd -1 and zstd -d here feeds the restore: less to send
# and less CPU than pg_dump -Z1 (docs/benchmark.rst).
ZSTD = "zstd"
# --single-thread: zstd's default (multi-threaded) mode holds back several
# MB before it writes anything, which stalls a slow dump's first bytes; one
# thread writes each 128 KB block as it is done, and spends less CPU.
ZSTD_COMPRESS_OPTIONS = ("-1", "-q", "-c", "--single-thread")
# What the remote version check prints when the remote host has a zstd that
# takes those options (a zstd too old for --single-thread does not).
REMOTE_ZSTD_MARKER = "datagovuk: zstd available"
# What the version check prints before psql's answer to the source check.
REMOTE_FACTS_MARKER = "datagovuk: source facts"
# pg_dump -j came with 9.3; with --remote-format directory an older remote
# pg_dump sends a custom-format dump instead, restored as it arrives.
PARALLEL_PG_DUMP = (9, 3)
# pg_dump --no-sync came with 10 (which began fsyncing its output).
NO_SYNC_PG_DUMP = (10,)
SCRIPTS = os.path.dirname(os.path.abspath(__file__))
VERSION_SCRIPT = os.path.join(SCRIPTS, "remote_version.sh")
ZSTD_DUMP_SCRIPT = os.path.join(SCRIPTS, "remote_zstd_dump.sh")
DIRECTORY_DUMP_SCRIPT = os.path.join(SCRIPTS, "remote_dump.sh")


def local_zstd() -> str | None:
    """zstd here, if installed (Debian: zstd); without it the remote
    pg_dump compresses."""
    return shutil.which(ZSTD)


def remote_zstd_command() -> str:
    """The remote host's zstd compressing, as a shell command."""
    return " ".join([shlex.quote(ZSTD), *ZSTD_COMPRESS_OPTIONS])


def parse_version(text: str) -> tuple[int, ...] | None:
    """The major version of ``pg_dump (PostgreSQL) 15.20 (Debian ...)``:
    (15,), or (9, 6) for the 9.x series."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        return (major, int(match.group(2)))
    return (major,)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def quoted(args) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


@dataclass(frozen=True)
class RemoteCommand:
    """The one command line the remote shell parses, and the script fed to
    it on stdin (``sh -s -- ARGS``), if any."""
    line: str
    script: str | None = None

    @classmethod
    def of_script(cls, script: str, *args) -> "RemoteCommand":
        return cls(f"sh -s -- {quoted(args)}", script)


def _remote_path(path: str) -> str:
    # The remote command starts in the login directory; "~/" would not
    # expand once quoted.
    return path[2:] if path.startswith("~/") else path


class Remote:
    """The remote host of one import: what it is asked to run, and what it
    was found to have (its pg_dump's version, zstd)."""

    def __init__(self, source: Source, options: ImportOptions):
        self.source = source
        self.options = options
        self.version: tuple[int, ...] | None = None
        self.has_zstd = False
        self.zstd_program = local_zstd()
        # psql's answer to the source check, from the version probe.
        self.facts: str | None = None

    # -- how the dump comes ------------------------------------------------

    @property
    def directory_route(self) -> bool:
        return (self.source.kind == Source.REMOTE_DATABASE
                and self.options.remote_format == "directory"
                and self.options.jobs > 1
                and (self.version is None
                     or self.version >= PARALLEL_PG_DUMP))

    @property
    def zlib_level(self) -> int:
        return (DEFAULT_COMPRESSION if self.options.compression is None
                else self.options.compression)

    @property
    def zstd_wanted(self) -> bool:
        """Whether zstd is to carry the stream if both hosts have it: a
        custom dump from [user@]host, no level asked for, and no
        --keep-dump (which keeps what arrives, and a pg_dump -Z1 file is
        what a kept dump should be)."""
        return (self.source.kind == Source.REMOTE_DATABASE
                and not self.directory_route
                and self.options.compression is None
                and not self.options.keep_dump)

    @property
    def zstd_transport(self) -> bool:
        """Whether the stream goes compressed by zstd rather than by the
        remote pg_dump."""
        return (self.zstd_wanted and self.has_zstd
                and self.zstd_program is not None)

    def wire_note(self) -> str:
        """How a remote pg_dump's output is compressed on the way, and why
        not by zstd, as ", compressed by ..."; a remote file goes as it
        is."""
        if self.zstd_transport:
            return ", compressed by zstd -1 on the way"
        if self.source.kind != Source.REMOTE_DATABASE:
            return ""
        why = ("" if not self.zstd_wanted
               else "; the remote host has no zstd" if not self.has_zstd
               else "; zstd is not installed here")
        return f", compressed by pg_dump -Z{self.zlib_level}{why}"

    # -- the version probe -------------------------------------------------

    def start_version_check(self) -> subprocess.Popen:
        """One ssh round trip: the remote pg_dump's version, whether the
        remote host has zstd, and psql's answer to the source check, if
        one is asked for."""
        self.options.ssh.check()
        check = self.options.source_check
        facts = ("", "", "", "")
        if check is not None:
            with open(check.sql_path) as sql:
                facts = (self.remote_psql(), self.options.remote_db,
                         check.site_user, sql.read())
        command = RemoteCommand.of_script(
            VERSION_SCRIPT, self.options.remote_pg_dump, REMOTE_ZSTD_MARKER,
            REMOTE_FACTS_MARKER, *facts, ZSTD, *ZSTD_COMPRESS_OPTIONS)
        with open(command.script, "rb") as script:
            return subprocess.Popen(self.ssh_command(command.line),
                                    stdin=script, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)

    def remote_psql(self) -> str:
        """psql beside the remote pg_dump when that is given by a path to
        a program named pg_dump, else psql from the remote PATH."""
        pg_dump = self.options.remote_pg_dump
        if "/" in pg_dump and os.path.basename(pg_dump) == "pg_dump":
            return os.path.join(os.path.dirname(pg_dump), "psql")
        return "psql"

    def check_versions(self, probe: subprocess.Popen, echo: Echo) -> None:
        local = subprocess.run([pg_program("pg_restore"), "--version"],
                               capture_output=True, text=True)
        local_version = parse_version(local.stdout)
        stdout, remote_version = self._probe_answer(probe)
        if local_version is None:
            raise OperatorError(f"cannot tell the version of the local "
                                f"pg_restore: {local.stdout.strip()}")
        echo(f"versions: remote pg_dump {version_text(remote_version)}, "
             f"local pg_restore {version_text(local_version)}")
        self.version = remote_version
        self.has_zstd = REMOTE_ZSTD_MARKER in stdout
        if self.options.remote_format == "directory" \
                and self.options.jobs > 1 and not self.directory_route:
            output.notice(echo, f"the remote pg_dump "
                          f"{version_text(remote_version)} cannot dump in "
                          "parallel (9.3 and later can): it sends a "
                          "custom-format dump instead")
        if local_version < remote_version:
            raise OperatorError(
                f"the remote pg_dump is version {version_text(remote_version)}"
                f" but the local pg_restore is {version_text(local_version)}: "
                "pg_restore cannot read dumps from a newer pg_dump; install "
                f"postgresql-client-{remote_version[0]} here")

    def _probe_answer(self, probe: subprocess.Popen
                      ) -> tuple[str, tuple[int, ...]]:
        try:
            stdout, stderr = probe.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise OperatorError(f"ssh to {self.source.host} did not answer "
                                "within 120 s")
        if probe.returncode == 255:
            raise OperatorError(f"cannot ssh to {self.source.host}: "
                                f"{meaningful_line(stderr) or 'ssh failed'}")
        stdout, marker, facts = stdout.partition(REMOTE_FACTS_MARKER + "\n")
        remote_version = parse_version(stdout)
        if marker and remote_version is not None:
            if probe.returncode != 0:
                raise OperatorError(
                    f"cannot read the old database {self.options.remote_db}"
                    f" on {self.source.host} before the transfer: "
                    f"{meaningful_line(stderr) or 'psql failed'} (psql runs "
                    "beside --remote-pg-dump, else from the remote PATH)")
            self.facts = facts
        if probe.returncode != 0 or remote_version is None:
            detail = meaningful_line(stderr) or stdout.strip()
            raise OperatorError(
                f"cannot run {self.options.remote_pg_dump} on "
                f"{self.source.host}: {detail or 'no version reported'} "
                "(give its path with --remote-pg-dump)")
        return stdout, remote_version

    # -- the dump ----------------------------------------------------------

    def ssh_command(self, remote_command: str) -> list[str]:
        return self.options.ssh.command(self.source.host, remote_command)

    def command(self) -> RemoteCommand:
        """What the remote host runs to send the dump."""
        options = self.options
        if self.source.kind != Source.REMOTE_DATABASE:
            return RemoteCommand(
                f"cat -- {shlex.quote(_remote_path(self.source.path))}")
        if self.directory_route:
            no_sync = (self.version is not None
                       and self.version >= NO_SYNC_PG_DUMP)
            return RemoteCommand.of_script(
                DIRECTORY_DUMP_SCRIPT, options.remote_pg_dump,
                options.remote_db, options.jobs, self.zlib_level,
                "no-sync" if no_sync else "sync", options.remote_tmpdir or "")
        if self.zstd_transport:
            return RemoteCommand.of_script(
                ZSTD_DUMP_SCRIPT, options.remote_pg_dump, options.remote_db,
                ZSTD, *ZSTD_COMPRESS_OPTIONS)
        return RemoteCommand(quoted([
            options.remote_pg_dump, "-Fc", f"-Z{self.zlib_level}", "-O", "-x",
            "-w", "-d", options.remote_db]))

    def shell_line(self) -> str:
        """The ssh command as a shell line, for --plan."""
        command = self.command()
        line = quoted(self.ssh_command(command.line))
        return line + (f" < {shlex.quote(command.script)}"
                       if command.script else "")

    def start(self, children: Children) -> Child:
        """ssh running ``command()``, its output on a pipe."""
        command = self.command()
        args = self.ssh_command(command.line)
        if command.script is None:
            return children.start("ssh", args, stdout=subprocess.PIPE)
        with open(command.script, "rb") as script:
            return children.start("ssh", args, stdin=script,
                                  stdout=subprocess.PIPE)

    def fail(self, reader: Child, nothing_received: bool = False) -> None:
        """Raise the remote side's reason when it failed (ssh error,
        remote pg_dump or cat error)."""
        status = reader.wait()
        host = self.source.host
        failed = [child for child in reader.linked
                  if child.wait() != 0 and not child.killed]
        for child in failed:
            if not re.search(r"premature end|end of file",
                             child.error_line()):
                # Not the truncation a failing remote side causes.
                raise OperatorError(
                    f"the compressed dump from {host} cannot be read: "
                    f"{child.error_line() or child.name + ' failed'}")
        if status == 0 and not nothing_received:
            if failed:
                raise OperatorError(f"the compressed dump from {host} is "
                                    "truncated, nothing was imported")
            return
        line = reader.error_line()
        if status == 255:
            raise OperatorError(f"the ssh connection to {host} failed: "
                                f"{line or 'ssh exited with status 255'}")
        if status != 0 and not reader.killed:
            what = ("the remote dump" if self.directory_route
                    else self.options.remote_pg_dump
                    if self.source.kind == Source.REMOTE_DATABASE else "cat")
            raise OperatorError(f"{what} failed on {host}: "
                                f"{line or f'exit status {status}'}")
        if nothing_received:
            raise OperatorError(f"{self.source.describe(self.options.remote_db)}"
                                ": nothing received (empty dump)")
