"""``paster datagovuk COMMAND ... -c CONFIG``: hands off to the click group.

Unlike ``ckan -c``, this entry point can check the config and the database
before CKAN builds its app, so an operator gets one line instead of CKAN's
start-up traceback; and it builds CKAN's app with CKAN's start-up logging
held back (a stock config without Solr or Redis prints screens of it,
tracebacks included), unless ``-v``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from paste.script.command import Command

from ckanext.datagovuk import preconditions


def split_config(args: list[str]) -> tuple[str | None, list[str]]:
    """Take ``-c FILE``/``--config FILE``/``--config=FILE`` out of ``args``."""
    config, rest = os.environ.get("CKAN_INI") or None, []
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--config") and args:
            config = args.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("-c") and len(arg) > 2:
            config = arg[2:]
        else:
            rest.append(arg)
    return config, rest


VERBOSE_OPTIONS = ("-v", "--verbose")


def split_verbose(group, args: list[str]) -> tuple[bool, list[str]]:
    """Take paster's ``-v`` (show CKAN's start-up logging) out of ``args``,
    unless the command takes a ``-v`` of its own, which then gets it."""
    verbose = bool(set(VERBOSE_OPTIONS) & set(args))
    command = group.commands.get(args[0]) if args else None
    takes_it = command is not None and any(
        set(VERBOSE_OPTIONS) & set(getattr(param, "opts", ()))
        for param in command.params)
    if takes_it:
        return verbose, args
    return verbose, [arg for arg in args if arg not in VERBOSE_OPTIONS]


@contextlib.contextmanager
def start_up_quiet(verbose: bool):
    """CKAN's logging and warnings held back while CKAN starts, unless
    ``verbose``: whatever CKAN's start-up then reports is its own
    business, and a command that needs what failed says so in one line."""
    if verbose:
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def run(args: list[str]) -> int:
    from ckanext.datagovuk.cli import HELP_OPTIONS, datagovuk

    config, rest = split_config(args)
    verbose, rest = split_verbose(datagovuk, rest)
    if not rest or set(HELP_OPTIONS) & set(rest):
        # As `ckan datagovuk`: help needs no config, and no command at all
        # is a usage error (the group's usage on stderr, exit status 2).
        return _main(datagovuk, rest, None)
    if rest[0] == "import":
        return run_import(config, rest)
    try:
        preconditions.check_config_file(config)
        # `migrate --from` swaps a new database in; CKAN's start-up needs
        # one to exist, and an empty one is replaced without --replace.
        preconditions.check_database(
            config, create=rest[0] == "migrate" and any(
                arg == "--from" or arg.startswith("--from=") for arg in rest))
    except preconditions.PreconditionError as error:
        print(f"Error: {error}", file=sys.stderr)
        return error.exit_code

    try:
        # What `ckan -c` does before running a command, but a config CKAN
        # rejects becomes one line instead of several and a traceback.
        with start_up_quiet(verbose):
            from ckan.cli.cli import CtxObject
            ckan_context = CtxObject(os.path.abspath(config))
    except Exception as error:
        print(f"Error: CKAN cannot load the config {config}: "
              f"{config_problem(error)}", file=sys.stderr)
        return preconditions.UsageError.exit_code
    return _main(datagovuk, rest, ckan_context)


def config_problem(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines
             if line != "Invalid configuration values provided:"]
    return "; ".join(lines) or type(error).__name__


def _main(group, args: list[str], obj) -> int:
    try:
        group.main(args, prog_name="paster datagovuk", obj=obj)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


def run_import(config: str | None, rest: list[str]) -> int:
    """``import`` runs without building CKAN's app: the app would need the
    target database to exist, and the import creates it (the staging
    database is renamed into place), so a failed import into a database
    that did not exist leaves none behind."""
    from ckanext.datagovuk.cli import datagovuk
    from ckanext.datagovuk.cli_import import ConfiguredDatabase

    try:
        preconditions.check_config_file(config)
        url = preconditions.database_url(config)
    except preconditions.PreconditionError as error:
        print(f"Error: {error}", file=sys.stderr)
        return error.exit_code
    return _main(datagovuk, rest, ConfiguredDatabase(url, config))


class DatagovukCommand(Command):
    summary = "Move an old CKAN site to this one (ckanext-datagovuk)"
    usage = "COMMAND [OPTIONS] -c CKAN_INI   (paster datagovuk --help lists them)"
    group_name = "ckanext-datagovuk"
    parser = Command.standard_parser()

    def run(self, args):
        return run(args)
