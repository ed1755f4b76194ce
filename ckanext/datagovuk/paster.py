"""``paster datagovuk COMMAND ... -c CONFIG``: hands off to the click group.

Unlike ``ckan -c``, this entry point can check the config and the database
before CKAN builds its app, so an operator gets one line instead of CKAN's
start-up traceback.
"""
from __future__ import annotations

import os
import sys

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


def run(args: list[str]) -> int:
    from ckanext.datagovuk.cli import datagovuk

    config, rest = split_config(args)
    if not rest or "--help" in rest or "-h" in rest:
        return datagovuk.main(rest or ["--help"], prog_name="paster datagovuk",
                              standalone_mode=False) or 0
    try:
        preconditions.check_config_file(config)
        preconditions.check_database(config, create=rest[0] == "import")
    except preconditions.PreconditionError as error:
        print(f"Error: {error}", file=sys.stderr)
        return error.exit_code

    from ckan.cli.cli import ckan
    try:
        ckan.main(["-c", os.path.abspath(config), "datagovuk", *rest],
                  prog_name="paster")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


class DatagovukCommand(Command):
    summary = "Move an old CKAN site to this one (ckanext-datagovuk)"
    usage = "COMMAND [OPTIONS] -c CKAN_INI   (paster datagovuk --help lists them)"
    group_name = "ckanext-datagovuk"
    parser = Command.standard_parser()

    def run(self, args):
        return run(args)
