"""Import an old CKAN site's database into the database of this CKAN's config,
all or nothing.

Sources (``parse_source``):

* ``[user@]host``: ``pg_dump -Fc`` runs on the remote host over ssh and its
  output is restored as it arrives (compressed on the way by ``zstd -1`` when
  both hosts have zstd, else by pg_dump itself with ``-Z1``, or at the level
  ``compression`` when one is given): the
  tables and their data by one ``pg_restore`` reading the stream, then, with
  ``jobs`` > 1, the indexes, keys and constraints by ``pg_restore -j N`` from
  the dump's head (a custom dump starts with its table of contents), so
  nothing of the dump is stored on either host.  With ``jobs`` = 1 one
  ``pg_restore`` does it all.  With ``remote_format`` "directory" it writes
  a directory-format dump with ``-j N`` into a temporary directory there
  instead; each table's data file is sent back as soon as pg_dump has
  finished it (a tar archive each, then the rest with ``toc.dat``), unpacked
  here and, once all has arrived, loaded with ``pg_restore -j N``: a
  parallel dump, at the cost of the compressed dump's size in disk on both
  hosts and of restoring nothing until the whole dump is here
  (docs/benchmark.rst compares the two);
* ``[user@]host:PATH``: a dump file on the remote host, streamed with ``cat``
  and restored as it arrives, as above;
* a local file: a custom-format dump (``pg_restore``) or a plain SQL dump
  made by ``pg_dump`` (``psql``, stopping at the first error, in one
  transaction).  The format is told by the content (custom dumps start with
  ``PGDMP``), not by the file name.  A local directory-format dump (a
  directory holding ``toc.dat``, e.g. one kept with ``--keep-dump``) loads
  with ``pg_restore -j N``.

The load goes into a staging database ``<target>__import_<pid>``, owned by the
CKAN database user, restored with no owners and no privileges as that user.
Only when the whole load succeeded and the result is a CKAN database is it
swapped in, by renaming both databases in one transaction.  Any failure
drops the staging database and leaves the target as it was.

One import per target database runs at a time (:mod:`.lock`): a second
refuses at once naming the first, or waits with ``wait``.  With a
``source_check`` (``migrate --from``), a read-only query of the source is
judged before anything is transferred from ``[user@]host`` (psql there, in
the version probe's ssh invocation), or, for a dump file, once the data is
in and before the indexes are built.

Plain dumps: statements that set owners or privileges (``ALTER ... OWNER TO``,
``GRANT``, ``REVOKE``, ``SET SESSION AUTHORIZATION``, ``ALTER DEFAULT
PRIVILEGES``) and ``COMMENT ON EXTENSION`` (which only the extension's owner
may run) are dropped while streaming, outside ``COPY`` data, so a dump made
with or without ``-O -x`` loads the same way: everything owned by the CKAN
user.  A dump that switches database (``\\connect``, from ``pg_dump -C`` or
``pg_dumpall``) is refused.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

from ckanext.datagovuk import output, workdir
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.transfer.load import Loader
from ckanext.datagovuk.transfer.lock import TargetLock
from ckanext.datagovuk.transfer.options import (
    DEFAULT_ADMIN_URL_ENV, DEFAULT_COMPRESSION, DEFAULT_JOBS,
    DEFAULT_REMOTE_FORMAT, DEFAULT_REMOTE_PG_DUMP, REMOTE_FORMATS,
    ImportOptions, ImportResult, SourceCheck, check_options)
from ckanext.datagovuk.transfer.plain import PlainDumpFilter, detect_format
from ckanext.datagovuk.transfer.plan import plan_lines, refusal
from ckanext.datagovuk.transfer.remote import Remote, parse_version
from ckanext.datagovuk.transfer.sources import (
    DEFAULT_REMOTE_DB, Source, SshSettings, parse_source)
from ckanext.datagovuk.transfer.staging import (
    Staging, TargetState, backup_name, extension_package, staging_name)
from ckanext.datagovuk.transfer.stream import (Children, Echo, silent,
                                               signals_ignored, signals_raise)

__all__ = [
    "DEFAULT_ADMIN_URL_ENV", "DEFAULT_COMPRESSION", "DEFAULT_JOBS",
    "DEFAULT_REMOTE_DB", "DEFAULT_REMOTE_FORMAT", "DEFAULT_REMOTE_PG_DUMP",
    "REMOTE_FORMATS", "AlongsideSwap", "BeforeSwap", "ImportOptions",
    "ImportResult", "SourceCheck",
    "check_usage",
    "PlainDumpFilter", "Source", "SshSettings", "TargetState", "backup_name",
    "detect_format", "extension_package", "import_database",
    "parse_source", "parse_version", "plan", "probe_source", "refusal",
    "staging_name",
]

# Called with the staging database's URL once it is loaded and verified,
# before the swap: work done there (``migrate --from``) lands with the swap
# or is dropped with the staging database.
BeforeSwap = Callable[[str], None]
# Entered right before the swap and left right after it: a change that must
# land with the database (``migrate --from`` swaps the search core in), made
# on entering and undone when the swap raises.
AlongsideSwap = Callable[[], ContextManager[None]]


class _Import:
    """One import: the checks, then load, verify and swap, each by the
    room that knows how; whatever fails, cleanup leaves the target as it
    was."""

    def __init__(self, source: Source, target_url, options: ImportOptions,
                 echo: Echo, before_swap: BeforeSwap | None = None,
                 alongside_swap: AlongsideSwap | None = None):
        self.source = source
        self.options = options
        self.echo = echo
        self.before_swap = before_swap
        self.alongside_swap = alongside_swap or contextlib.nullcontext
        self.phases: list[tuple[str, float]] = []
        self.children = Children()
        self.lock = TargetLock(target_url, echo)
        self.staging = Staging(target_url, options.admin_url, echo)
        self.remote = Remote(source, options)
        self.loader = Loader(source, options, echo, self.phase, self.staging,
                             self.remote, self.children)
        if options.source_check and source.kind != Source.REMOTE_DATABASE:
            # The source cannot be queried: the check runs on what it
            # loaded, before the indexes are built.
            self.loader.data_loaded = self.check_loaded_data

    @contextlib.contextmanager
    def phase(self, name: str):
        with output.step(self.echo, name) as step:
            yield step
        self.phases.append((name, step.seconds))

    def run(self) -> ImportResult:
        # One import per target at a time: a second refuses (or waits)
        # before it checks or changes anything.
        self.lock.acquire(self.options.wait)
        try:
            with self.phase("checks") as step:
                state = self.checks()
                step.result = f"target {self.staging.target} " + (
                    "(empty)" if state.empty else "(to be replaced)"
                    if state.exists else "(new)")
            try:
                result = self.load_verify_swap(state)
            except BaseException:
                with signals_ignored():
                    self.cleanup(failed=True)
                raise
            with signals_ignored():
                self.cleanup(failed=False)
            return result
        finally:
            self.lock.release()

    def checks(self) -> TargetState:
        # The ssh round trip for the remote version runs while the target
        # is inspected.
        probe = (self.remote.start_version_check()
                 if self.source.kind == Source.REMOTE_DATABASE else None)
        try:
            check_options(self.source, self.options,
                          self.remote.directory_route)
            state = self.staging.check_target(self.options.replace)
            for path in workdir.remove_abandoned():
                output.notice(self.echo, f"removed {path}, left by an "
                              "import that was killed")
            if probe is not None:
                self.remote.check_versions(probe, self.echo)
                if self.remote.facts is not None:
                    # Its decisions print under the checks step's line.
                    self.options.source_check.judge(self.remote.facts)
        finally:
            if probe is not None and probe.poll() is None:
                probe.kill()
                probe.wait()
        return state

    def check_loaded_data(self) -> None:
        check = self.options.source_check
        with self.phase("decisions"):
            check.judge(self.loader.restore.query_file(check.sql_path,
                                                       check.site_user))

    def load_verify_swap(self, state: TargetState) -> ImportResult:
        # The remote host dumps for a while before it sends anything: the
        # staging database is made meanwhile.
        remote_dump = (self.remote.start(self.children)
                       if self.remote.directory_route else None)
        self.staging.create()
        self.loader.load(remote_dump)
        with self.phase("verify") as step:
            counts, size, pretty = self.staging.verify()
            step.result = (f"{pretty}, {counts.get('package', 0)} "
                           "datasets")
        if self.before_swap:
            self.before_swap(
                self.staging.url.render_as_string(hide_password=False))
            counts, size, pretty = self.staging.verify()
        self.lock.reassert()
        self.staging.hold_claim()
        # Not interruptible: the operator is told exactly what happened.
        with self.phase("swap") as step, signals_ignored(), \
                self.alongside_swap():
            backup = self.staging.swap(state, self.options.drop_old)
            step.result = f"now {self.staging.target}" + (
                f" (the old one kept as {backup})" if backup
                and not state.empty and not self.options.drop_old else "")
        loader = self.loader
        return ImportResult(
            database=self.staging.target, size_bytes=size,
            size_pretty=pretty, row_counts=counts,
            source=self.source.describe(self.options.remote_db),
            dump_format=loader.dump_format,
            bytes_transferred=loader.bytes_transferred,
            backup_database=backup if backup and not state.empty
            and not self.options.drop_old else None,
            replaced_empty=state.exists and state.empty,
            phases=self.phases, kept_dump=loader.kept_dump,
            wire=self.remote.wire_note() if self.source.is_remote else "")

    def cleanup(self, failed: bool) -> None:
        self.children.kill_all()
        self.staging.cleanup(failed, keep=self.options.keep_failed)
        self.loader.cleanup(failed)


def check_usage(source_text: str, options: ImportOptions) -> Source:
    """The checks that need nothing but the arguments (the import runs them
    again with what only a running import knows, the remote pg_dump's
    version): the CLI turns a refusal into a usage error."""
    source = parse_source(source_text)
    check_options(source, options, Remote(source, options).directory_route)
    return source


def plan(source: str | Source, target_url,
         options: ImportOptions | None = None) -> list[str]:
    """What :func:`import_database` would run, step by step; runs nothing."""
    options = options or ImportOptions()
    if isinstance(source, str):
        source = parse_source(source)
    return plan_lines(source, target_url, options)


def probe_source(source: str | Source, options: ImportOptions
                 ) -> str | None:
    """psql's answer to ``options.source_check`` from a ``[user@]host``
    source, read only, with the version probe; None for other sources."""
    if isinstance(source, str):
        source = parse_source(source)
    if source.kind != Source.REMOTE_DATABASE or options.source_check is None:
        return None
    remote = Remote(source, options)
    remote.check_versions(remote.start_version_check(), silent)
    return remote.facts


def import_database(source: str | Source, target_url,
                    options: ImportOptions | None = None,
                    echo: Echo = silent,
                    before_swap: BeforeSwap | None = None,
                    alongside_swap: AlongsideSwap | None = None
                    ) -> ImportResult:
    """Import ``source`` into the database of ``target_url`` (see the
    package doc).  ``before_swap`` is called with the staging database's
    URL once it is loaded and verified; ``alongside_swap`` is entered just
    before the swap and left just after it (with the swap's error, if any).
    Raises OperatorError with a
    one-line reason on any failure, after dropping the staging database;
    an interrupt (SIGINT, or SIGTERM while this runs) is a failure too."""
    options = options or ImportOptions()
    if isinstance(source, str):
        source = parse_source(source)
    job = _Import(source, target_url, options, echo, before_swap,
                  alongside_swap)
    with signals_raise():
        try:
            return job.run()
        except KeyboardInterrupt as interrupt:
            name = str(interrupt) or "SIGINT"
            raise OperatorError(f"interrupted ({name}); nothing was imported "
                                "and the staging database was removed")
