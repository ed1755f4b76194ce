"""How every ``datagovuk`` command prints: its options grouped in
``--help``, the output options (-v, -q, --json) and :class:`Run` (progress,
then one result as text or JSON), and the group that turns an error into
one line (and, with --json, the one JSON object).
"""
from __future__ import annotations

import sys

import click

from ckanext.datagovuk import output
from ckanext.datagovuk.errors import OperatorError


# -h too, as `paster help datagovuk` asks for help with -h.
HELP_OPTIONS = ["-h", "--help"]
# Where `--help` lists an option; the others are the command's own.
OUTPUT_GROUP = "Output options"
IMPORT_GROUP = "Import options"


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options by group: its own, the
    import's (shared by ``migrate --from``), then the output's."""

    def format_options(self, ctx, formatter):
        groups: dict[str, list] = {f"{self.name.capitalize()} options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                group = getattr(param, "help_group", None) \
                    or next(iter(groups))
                groups.setdefault(group, []).append(record)
        for title, records in groups.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def option_group(group: str, options: list):
    """A decorator adding ``options`` (click.option decorators), listed
    under ``group`` by ``--help``."""
    def apply(command):
        for option in reversed(options):
            command = option(command)
            command.__click_params__[-1].help_group = group
        return command
    return apply


_OUTPUT_OPTIONS = [
    click.option("-v", "--verbose", is_flag=True,
                 help="Show the detail too: each revision of the schema "
                      "upgrade, each table archived, each statement's "
                      "count."),
    click.option("-q", "--quiet", is_flag=True,
                 help="Print only errors and the final table."),
    click.option("--json", "as_json", is_flag=True,
                 help="Print one JSON object on stdout ({ok, steps, error, "
                      "...}), even on failure; progress goes to stderr."),
]
# -v, -q and --json: every command's.
output_options = option_group(OUTPUT_GROUP, _OUTPUT_OPTIONS)


class Run:
    """One command's output: its progress while it runs, then its result
    as text or as the one JSON object."""

    def __init__(self, verbose: bool, quiet: bool, as_json: bool):
        if verbose and quiet:
            raise click.UsageError("-v and -q contradict each other: give "
                                   "one")
        self.as_json = as_json
        self.verbose = verbose
        # The command's fields known before a failure (a plan's lines).
        self.fields: dict = {}
        verbosity = (output.VERBOSE if verbose else
                     output.QUIET if quiet else output.NORMAL)
        self.progress = output.Progress(
            verbosity, stream=sys.stderr if as_json else sys.stdout)

    @classmethod
    def start(cls, verbose: bool, quiet: bool, as_json: bool) -> "Run":
        run = cls(verbose, quiet, as_json)
        click.get_current_context().meta[RUN_KEY] = run
        return run

    def finish_plan(self, lines: list[str], title: str,
                    stopped: str | None = None) -> None:
        """A --plan: its lines; a refusal it predicts (in its lines, or
        ``stopped``, a decision's) is the error (the plan is still
        printed, and kept in the JSON)."""
        from ckanext.datagovuk import transfer

        self.fields = {"plan": lines}
        refused = transfer.refusal(lines)
        if refused is None and stopped is None:
            self.finish(self.fields, "\n".join([title, *lines]))
            return
        if not self.as_json:
            click.echo("\n".join([title, *lines]))
        raise OperatorError(stopped or
                            f"the plan stops at a refusal: {refused}")

    def finish(self, fields=None, text: str = "", next_steps=(),
               notes=(), error: str | None = None) -> None:
        """The result; with ``error`` (a failure after work that stays
        done, whose report is still wanted) it says so and exits 1."""
        self.progress.clear_live()
        result = output.Result(ok=error is None, steps=self.progress.steps,
                               error=error,
                               fields=output.plain(fields or {}), text=text,
                               next_steps=list(next_steps), notes=list(notes))
        click.echo(result.to_json() if self.as_json
                   else result.to_text(self.verbose))
        if error is not None:
            click.echo(f"Error: {error}", err=True)
            click.get_current_context().exit(1)

    def fail(self, message: str) -> None:
        result = output.Result(ok=False, steps=self.progress.steps,
                               error=message, fields=self.fields)
        click.echo(result.to_json())


RUN_KEY = "datagovuk.run"


def _wants_json(ctx: click.Context) -> bool:
    """--json among the command's arguments, for an error found before
    the command could start its run (a usage error)."""
    return "--json" in ctx.args       # the arguments after the command


class OperatorErrorGroup(click.Group):
    """Runs each command so that an ``OperatorError`` or a usage error
    becomes one line on stderr and a non-zero exit status (2 for usage),
    never a traceback or click's three-line usage message; with --json
    the one JSON object on stdout says it too."""

    command_class = GroupedCommand

    def invoke(self, ctx):
        wants_json = _wants_json(ctx)
        try:
            return super().invoke(ctx)
        except OperatorError as error:
            self._report(ctx, str(error), wants_json)
            ctx.exit(error.exit_code)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else ctx.command_path
            self._report(ctx, f"{error.format_message()} (see '{where} "
                         "--help')", wants_json)
            ctx.exit(error.exit_code)

    @staticmethod
    def _report(ctx, message: str, wants_json: bool) -> None:
        run = ctx.meta.get(RUN_KEY)
        if run is not None:
            run.progress.clear_live()
        click.echo(f"Error: {message}", err=True)
        if run is not None and run.as_json:
            run.fail(message)
        elif run is None and wants_json:
            click.echo(output.Result(ok=False, error=message).to_json())
