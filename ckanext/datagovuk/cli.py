"""The ``datagovuk`` command group: argument parsing and printing only.

The work is done by the modules named after it (``transfer``, ``runner``,
``sysadmins``, ...); this file turns their results and errors into output.
"""
from __future__ import annotations

import click

from ckanext.datagovuk.cli_import import (
    check_import_usage, config_path, configured_url,
    import_options, import_options_from, import_target_url)
from ckanext.datagovuk.cli_run import (  # noqa: F401 (paster's HELP_OPTIONS)
    HELP_OPTIONS, OperatorErrorGroup, Run, output_options)
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.verify.run import DEFAULT_SAMPLE


@click.group(cls=OperatorErrorGroup, short_help="Move an old CKAN (data.gov.uk 2.2) site to this CKAN.",
             context_settings={"help_option_names": HELP_OPTIONS})
def datagovuk():
    """Move a whole CKAN site from an old instance to this one.

    The usual order: `import` the old database from its host, `migrate` it
    (data migrations, then CKAN's schema upgrade), `promote` the sysadmins
    again, and check with `status`.
    """


@datagovuk.command(short_help="Make users sysadmins again (after migrate).")
@click.argument("users", nargs=-1)
@click.option("--demoted", is_flag=True,
              help="The sysadmins the migration demoted (and who still exist).")
@click.option("--configured", is_flag=True,
              help="The users of the setting ckanext.datagovuk.sysadmins.")
@output_options
def promote(users, demoted, configured, verbose, quiet, as_json):
    """Promote USERS (names, ids or unambiguous emails) to sysadmin.

    All or nothing: an unknown or deleted user means nobody is promoted.
    Every promotion is recorded in datagovuk.promotions.
    """
    from ckanext.datagovuk import sysadmins

    run = Run.start(verbose, quiet, as_json)
    result = sysadmins.promote(users, demoted=demoted, configured=configured)
    run.finish(result, sysadmins.format_result(result))


@datagovuk.command(short_help="Where this database stands, and what to run next.")
@output_options
def status(verbose, quiet, as_json):
    """Schema version, pending migrations, data migrations applied and
    pending, sysadmins still to promote, counts, and the next command."""
    from ckanext.datagovuk import status as database_status

    run = Run.start(verbose, quiet, as_json)
    result = database_status.collect()
    run.finish(result, database_status.format_text(result))


@datagovuk.command(short_help="Rebuild the search index into a new core, then swap it in.")
@click.option("--configset", default="ckan", show_default=True,
              help="Solr configset the new core is made from.")
@click.option("--into", metavar="CORE",
              help="Name of the new core (default: <live core>-reindex-<time>); "
                   "it must not exist yet.")
@click.option("--no-swap", is_flag=True,
              help="Build and verify the new core, and leave it next to the "
                   "live one, unswapped.")
@click.option("--drop-old", is_flag=True,
              help="Unload the previous index after the swap instead of keeping it.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Indexing processes (default: the number of CPUs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=250,
              show_default=True, help="Datasets sent to Solr per request.")
@output_options
def reindex(configset, into, no_swap, drop_old, workers, batch_size,
            verbose, quiet, as_json):
    """Index every dataset CKAN indexes (active, private and draft) with
    CKAN's own indexer into a new Solr core, created through CoreAdmin on
    the node of solr_url while the live core keeps serving; check that it
    holds every dataset and that a sample matches package_show; then swap
    it with the live core (CoreAdmin SWAP). The previous index is kept
    under a printed name unless --drop-old. A Solr that does not answer,
    or whose live core has a schema this CKAN does not accept, is refused
    before anything starts; a failure or Ctrl-C unloads the new core and
    leaves the live one as it was. Progress goes to stderr on a terminal,
    else a line to stdout every 10 s."""
    import io
    import os

    from ckan.common import config

    from ckanext.datagovuk.search import reindex as search_index
    from ckanext.datagovuk.search.solr import SolrCores

    if no_swap and drop_old:
        raise click.UsageError("--drop-old does not go with --no-swap")
    options = search_index.ReindexOptions(
        configset=configset, into=into, swap=not no_swap, drop_old=drop_old,
        workers=workers or os.cpu_count() or 1, batch_size=batch_size)
    run = Run.start(verbose, quiet, as_json)
    with run.progress.step("reindex") as step:
        result = search_index.reindex(
            SolrCores.from_config(config), options,
            # -q: its progress line goes nowhere.
            progress_stream=io.StringIO() if quiet else run.progress.stream)
        step.result = f"{result['datasets']} datasets"
    run.finish(result, search_index.format_result(result))


@datagovuk.command(short_help="Check the migrated database against its manifest and CKAN's API.")
@click.option("--all", "everything", is_flag=True,
              help="Ask CKAN's API for every dataset and user, not a sample.")
@click.option("--sample", type=click.IntRange(min=0), default=DEFAULT_SAMPLE,
              show_default=True, metavar="N",
              help="Datasets asked of CKAN's API, chosen at random (and "
                   "N/10 of their publishers, N/10 users); every dataset a "
                   "trap fix touched is asked too.")
@click.option("--seed", type=int, metavar="S",
              help="Seed of the random sample (printed by every run).")
@click.option("--jobs", type=click.IntRange(min=1), metavar="N",
              help="Worker processes asking CKAN's API (default: the CPU "
                   "count; 1: none).")
@output_options
@click.pass_context
def verify(ctx, everything, sample, seed, jobs, verbose, quiet, as_json):
    """Compare the migrated database (sqlalchemy.url) with the manifest
    `migrate` recorded before it changed anything, by the documented rules:
    datasets, extras, resources, publishers, users, archive row counts, no
    tags, the schema against CKAN's model; then ask CKAN's own API
    (package_show, organization_show, user_show) for a sample. One line
    per check; exit 0 only when every check holds. Read-only; no Solr."""
    import json
    import os
    import sys

    from ckan.common import config

    from ckanext.datagovuk import output
    from ckanext.datagovuk.verify import run

    if verbose and quiet:
        raise click.UsageError("-v and -q contradict each other: give one")
    url = config.get("sqlalchemy.url")
    progress = output.Progress(
        output.QUIET if quiet else
        output.VERBOSE if verbose else output.NORMAL,
        stream=sys.stderr if as_json else sys.stdout)
    try:
        report = run.verify(url, run.SampleOptions(
            size=sample, seed=seed, everything=everything,
            jobs=jobs or os.cpu_count() or 1),
            progress=progress, request_context=_request_context(ctx))
    except OperatorError as error:
        if not as_json:
            raise
        # Scripts read the reason from the JSON, like every other outcome.
        report = run.VerifyReport(url, error=str(error))
    finally:
        progress.clear_live()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif quiet and report.ok:
        click.echo(report.to_text().splitlines()[0])
    else:
        click.echo(report.to_text())
    ctx.exit(0 if report.ok else 1)


def _request_context(ctx: click.Context):
    """CKAN's Flask app's request context, under `ckan -c` and `paster`."""
    from ckan.cli.cli import CtxObject

    app = ctx.find_object(CtxObject)
    return app.app._wsgi_app.test_request_context if app else None


@datagovuk.command(short_help="Data migrations + CKAN schema upgrade, all or nothing.")
@click.option("--dry-run", is_flag=True,
              help="Do everything, print the report, then roll back: the "
                  "database is left exactly as it was.")
@click.option("--skip-upgrade", is_flag=True,
              help="Commit after the data migrations; no archive, no schema "
                  "upgrade (run migrate again later to do them).")
@click.option("--no-archive", is_flag=True,
              help="Do not copy the tables CKAN's upgrade drops (*_revision, "
                  "revision, the old authorization tables, related, rating, "
                  "resource_group, package_extra, group_extra) to "
                  "datagovuk_legacy. Tables CKAN does not know are still "
                  "moved there, never dropped, and related items are still "
                  "copied (CKAN's upgrade would leave them in public).")
@click.option("--no-data-migrations", is_flag=True,
              help="Run none of the data migrations (data.gov.uk's "
                  "001_bytemark_to_govuk.sql, which needs CKAN 2.2's tables: "
                  "legacy versions 71 to 73) and record them as skipped: "
                  "upgrades any legacy CKAN database (sqlalchemy-migrate "
                  "version 1 to 89: CKAN before 2.9) or an older alembic "
                  "one, still with the archive, the trap fixes and one "
                  "transaction.")
@click.option("--no-history", is_flag=True,
              help="Do not turn the old revisions into activities (by "
                  "default each dataset's revisions become activities that "
                  "\"View this version\" and \"Changes\" show); the "
                  "activity -> revision mapping is still archived.")
@click.option("--migrations-dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of NNN_*.sql data migrations (default: the ones "
                  "shipped with ckanext-datagovuk).")
@click.option("--resolve-email-clash", type=click.Choice(["stop", "keep-oldest"]),
              default="stop", show_default=True,
              help="Active users whose emails differ only in case break CKAN "
                  "2.12's unique index. stop: roll back and list them; "
                  "keep-oldest: the oldest account keeps the address, the "
                  "others' is cleared and recorded in "
                  "datagovuk.email_clash_resolutions.")
@click.option("--from", "source", metavar="SOURCE",
              help="The whole move in one run: import SOURCE (as `import` "
                   "takes it) into a staging database, migrate it there, "
                   "promote the users of ckanext.datagovuk.sysadmins, and "
                   "only then swap it in as this site's database. Any "
                   "failure leaves this site's database as it was. Takes "
                   "the options of `import` too.")
@click.option("--plan", is_flag=True,
              help="With --from: print each step and the exact ssh, pg_dump "
                   "and pg_restore command lines (passwords hidden), and "
                   "change nothing.")
@click.option("--no-reindex", is_flag=True,
              help="With --from: do not build the staging database's search "
                   "index into a new Solr core (swapped in with the "
                   "database); for sites indexed elsewhere.")
@click.option("--no-verify", is_flag=True,
              help="Do not check the move against the manifest (as "
                   "`datagovuk verify`). By default, when data migrations "
                   "run, its database checks run in the transaction before "
                   "the commit (a difference rolls back) and its API "
                   "sample after it (with --from: all of it before the "
                   "swap). For a site's own migration in --migrations-dir "
                   "that changes what verify checks, on purpose.")
@click.option("--verify-sample", type=click.IntRange(min=0),
              default=DEFAULT_SAMPLE, show_default=True, metavar="N",
              help="Datasets verify's API sample asks CKAN for (as "
                   "`verify --sample`).")
@import_options
@output_options
@click.pass_context
def migrate(ctx, dry_run, skip_upgrade, no_archive, no_data_migrations,
            no_history, migrations_dir, resolve_email_clash, source, plan,
            no_reindex, no_verify, verify_sample, verbose, quiet, as_json,
            **import_args):
    """Turn the imported old-site (CKAN 2.2; with --no-data-migrations any
    legacy CKAN) database into one this CKAN runs on, in ONE transaction on
    the configured database:

    \b
    1. pre-flight: say what the database is; refuse an empty or non-CKAN
       one; find what would make CKAN's upgrade fail; ANALYZE (coarsely)
       the tables that have no planner statistics, as after a restore;
    2. (not with --skip-upgrade) rewrite package and resource with free
       space in each page, so the upgrade's whole-table updates skip their
       indexes (VACUUM FULL them later to give the space back);
    3. (not with --no-history) each dataset's old revisions become
       activities that "View this version" and "Changes" show;
       the activity -> revision mapping is archived; then
       the pending data migrations (001_bytemark_to_govuk.sql: tags, extras,
       organogram resources, non-publishing users, sysadmin demotion, user
       names, harvest sources), recorded in datagovuk.applied_migrations
       (with --no-data-migrations: recorded as skipped, not run);
    4. archive: tables CKAN does not know move to schema datagovuk_legacy,
       the tables CKAN's upgrade drops are copied there;
    5. fixes for the upgrade's traps (NULL extras, existing indexes, empty
       or clashing emails, ...);
    6. CKAN's schema upgrade (with the fix for resources losing their
       dataset at revision 074), then the migrations of the plugins in
       ckan.plugins;
    7. (not with --no-verify) when data migrations ran: the database
       checks of `datagovuk verify` against the manifest taken at the
       start; any difference rolls back. After the commit, verify's API
       sample: if it fails, "committed; API sample failed", exit 1.

    Any failure, Ctrl-C or SIGTERM rolls everything back. Run it with
    ckan.plugins as the site will run (their migrations run too). Settings:
    ckanext.datagovuk.keep_sysadmins, ckanext.datagovuk.organogram_base_url,
    ckan.site_id. Afterwards: `datagovuk promote --demoted` and
    `datagovuk reindex` (with --from the search index is built in the
    staging database's run and swapped in with it, unless --no-reindex).
    """
    from ckanext.datagovuk import migrate as migration

    run = Run.start(verbose, quiet, as_json)
    options = migration.MigrationOptions(
        dry_run=dry_run, skip_upgrade=skip_upgrade, archive=not no_archive,
        migrations_dir=migrations_dir, resolve_email_clash=resolve_email_clash,
        data_migrations=not no_data_migrations, history=not no_history,
        config_path=config_path(ctx), verify=not no_verify,
        verify_sample=verify_sample)
    if no_data_migrations and skip_upgrade:
        raise click.UsageError("--no-data-migrations with --skip-upgrade "
                               "would do nothing: give one of them")
    if plan and not source:
        raise click.UsageError("--plan goes with --from SOURCE")
    if source and dry_run:
        raise click.UsageError("--dry-run does not go with --from: --plan "
                               "shows what it would do")
    if no_reindex and not source:
        raise click.UsageError("--no-reindex goes with --from")
    if no_verify and ctx.get_parameter_source("verify_sample") \
            != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--verify-sample does not go with --no-verify")
    if source:
        _migrate_from(ctx, run, source, options, plan, import_args,
                      search_index=not no_reindex)
        return
    given = [f"--{name.replace('_', '-')}" for name in import_args
             if ctx.get_parameter_source(name)
             != click.core.ParameterSource.DEFAULT]
    if given:
        raise click.UsageError(f"{', '.join(given)} only go with --from")
    # Progress shares stdout with the report, so that a failure's stderr
    # is the one `Error:` line; with --json stdout is the JSON alone.
    report = migration.migrate_from_config(
        options, progress=run.progress,
        request_context=_request_context(ctx))
    committed = report.outcome.startswith("committed")
    run.finish(report.to_dict(), report.to_text(verbose),
               report.next_steps if committed else (),
               report.notes if committed else (),
               error=_api_sample_failure(report))


def _api_sample_failure(report) -> str | None:
    """The error of a committed move whose API sample failed."""
    from ckanext.datagovuk.verify import run

    if report.outcome != "committed; API sample failed":
        return None
    return f"{report.outcome}: {run.summary(report.verification)}"


def _migrate_from(ctx, run, source, options, plan, import_args,
                  search_index=True):
    from ckan.common import config

    from ckanext.datagovuk import pipeline

    import_options_ = import_options_from(ctx, **import_args)
    check_import_usage(source, import_options_)
    plugins = config.get("ckan.plugins") or []
    if isinstance(plugins, str):
        plugins = plugins.split()
    if plan:
        lines = pipeline.plan(source, configured_url(ctx), import_options_,
                              options, list(plugins), config, search_index)
        found = pipeline.plan_decisions(source, import_options_, options,
                                        config)
        run.finish_plan(lines + _decision_lines(found),
                        "migrate --from would, changing nothing now:",
                        _stopping_decision(found))
        return
    target_url = import_target_url(ctx)
    report = pipeline.migrate_from(source, target_url, import_options_,
                                   options, list(plugins), config,
                                   echo=run.progress,
                                   search_index=search_index)
    run.finish(report.to_dict(), report.to_text(run.verbose),
               report.migration.next_steps, report.migration.notes)


def _decision_lines(found) -> list[str]:
    """The plan's decisions, each with the option that settles it."""
    if found is None:
        return ["Decisions: checked once the dump's data is loaded, before "
                "its indexes are built"]
    return ["Decisions (asked of the old database now, read only):"] + [
        f"  {decision.line()}" for decision in found] + (
        [] if found else ["  none: nothing migrate would stop for"])


def _stopping_decision(found) -> str | None:
    """Why the move would stop, when a decision refuses it."""
    from ckanext.datagovuk import decisions

    stopping = decisions.refusals(found or [])
    return f"the move would stop: {stopping[0].refusal}" if stopping else None


@datagovuk.command("import", short_help="Load the old site's database (over ssh or from a dump), all or nothing.")
@click.argument("source")
@import_options
@click.option("--plan", is_flag=True,
              help="Print the programs the import would run (ssh, pg_dump, "
                   "tar, pg_restore, the swap) and change nothing.")
@output_options
@click.pass_context
def import_(ctx, source, remote_db, ssh_port, identity, ssh_config,
            ssh_options, remote_pg_dump, keep_dump, jobs, remote_format,
            compress, remote_tmpdir, replace, drop_old, wait, keep_failed,
            admin_url_env, plan, verbose, quiet, as_json):
    """Load the old site's database into this CKAN's database
    (sqlalchemy.url), atomically.

    SOURCE is one of:

    \b
      [user@]host        pg_dump runs there over ssh (-O -x): a custom
                        dump restored as it arrives, or with
                        --remote-format directory a directory dump
                        (-Fd -j N) sent here table by table
      [user@]host:PATH   a dump file on the remote host
      FILE               a local custom-format (pg_dump -Fc) or plain SQL
                        dump, or a directory-format dump's directory

    The dump loads into a staging database as the CKAN database user, with
    no owners and no privileges; only a complete load that looks like a
    CKAN database replaces the target (both renamed in one transaction),
    and only while nothing else is connected to it. Any failure (ssh,
    remote pg_dump, a truncated or corrupt dump, Ctrl-C, SIGTERM, disk
    full) drops the staging database and leaves the target as it was.
    Plain SQL dumps load with psql in one transaction, stopping at the
    first error; their owner and privilege statements are left out.

    Through `paster datagovuk import ... -c INI` the target may not exist
    yet (the import creates it); `ckan -c INI` needs it to exist (empty is
    fine). Progress goes to stdout, a failure is one `Error:` line on
    stderr.
    """
    from ckanext.datagovuk import transfer

    run = Run.start(verbose, quiet, as_json)
    options = import_options_from(
        ctx, remote_db, ssh_port, identity, ssh_config, ssh_options,
        remote_pg_dump, keep_dump, jobs, remote_format, compress,
        remote_tmpdir, replace, drop_old, wait, keep_failed, admin_url_env)
    check_import_usage(source, options)
    if plan:
        run.finish_plan([f"  {line}" for line in transfer.plan(
            source, configured_url(ctx), options)],
            "import would, changing nothing now:")
        return
    target_url = import_target_url(ctx)
    # Progress goes to stdout: stderr is kept for the one-line error.
    result = transfer.import_database(source, target_url, options,
                                     echo=run.progress)
    run.finish(result, "\n".join(result.summary_lines()))
