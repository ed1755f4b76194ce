"""The ``datagovuk`` command group: argument parsing and printing only.

The work is done by the modules named after it (``transfer``, ``runner``,
``sysadmins``, ...); this file turns their results and errors into output.
"""
from __future__ import annotations

import functools

import click

from ckanext.datagovuk.errors import OperatorError


class OperatorErrorGroup(click.Group):
    """Runs each command so that an ``OperatorError`` becomes one line on
    stderr and a non-zero exit status, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OperatorError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=OperatorErrorGroup, short_help="Move an old CKAN (data.gov.uk 2.2) site to this CKAN.")
def datagovuk():
    """Move a whole CKAN site from an old instance to this one.

    The usual order: `import` the old database from its host, `migrate` it
    (data migrations, then CKAN's schema upgrade), `promote` the sysadmins
    again, and check with `status`.
    """
