"""The options of ``import``, shared with ``migrate --from``, and the
database and config they act on: a part of the CLI (it only parses)."""
from __future__ import annotations

import click

from ckanext.datagovuk.cli_run import IMPORT_GROUP, option_group
from ckanext.datagovuk.errors import OperatorError


class ConfiguredDatabase:
    """The target database URL read from the config by ``paster``, which
    runs ``import`` without building CKAN's app (whose start-up would need
    the database to exist already)."""

    def __init__(self, url: str, config_path: str | None = None):
        self.url = url
        self.config_path = config_path


def import_target_url(ctx: click.Context) -> str:
    configured = ctx.find_object(ConfiguredDatabase)
    if configured is not None:
        return configured.url
    from ckan.plugins import toolkit
    url = toolkit.config.get("sqlalchemy.url")
    if not url:
        raise OperatorError("the CKAN config has no sqlalchemy.url")
    # CKAN's own pooled connection to the target would block the swap.
    from ckan import model
    model.Session.remove()
    model.meta.engine.dispose()
    return url


_IMPORT_OPTIONS = [
    click.option("--remote-db", default="ckan", show_default=True, metavar="DB",
                 help="[user@]host source: the database pg_dump dumps on the "
                      "remote host, as a NAME or a libpq connection string "
                      "(\"host=... port=... dbname=... user=...\"; never a "
                      "password: the remote side uses its ~/.pgpass or trust)."),
    click.option("--ssh-port", type=int, metavar="N",
                 help="ssh port of the remote host (default: your ssh config, "
                      "else 22)."),
    click.option("--identity", metavar="FILE",
                 help="ssh private key to log in with (default: your ssh "
                      "config and agent)."),
    click.option("--ssh-config", metavar="FILE",
                 help="ssh config file to use instead of ~/.ssh/config "
                      "(ssh -F)."),
    click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
                 help="Extra ssh -o option; repeatable. Host key checking "
                      "cannot be turned off."),
    click.option("--remote-pg-dump", default="pg_dump", show_default=True,
                 metavar="PATH",
                 help="pg_dump on the remote host, e.g. "
                      "/usr/lib/postgresql/9.6/bin/pg_dump."),
    click.option("--keep-dump", metavar="PATH",
                 help="Keep a local copy of the transferred dump at PATH "
                      "(removed again if the transfer breaks off): a new "
                      "directory for a directory-format dump (from "
                      "[user@]host with --remote-format directory), else "
                      "a file."),
    click.option("--jobs", type=click.IntRange(min=1), default=2,
                 show_default=True, metavar="N",
                 help="Parallel jobs of pg_restore for the indexes and keys "
                      "(and of the remote pg_dump with --remote-format "
                      "directory). A custom-format dump is restored as it "
                      "arrives, then its indexes and keys are built with -j "
                      "N; 1 restores it all in one pg_restore. A local "
                      "custom or directory dump is restored with -j N. "
                      "Plain SQL dumps always load in one job."),
    click.option("--remote-format", type=click.Choice(["custom", "directory"]),
                 default="custom", show_default=True,
                 help="[user@]host source: custom streams pg_dump -Fc here "
                      "and restores it as it arrives, using no disk on "
                      "either host; directory runs pg_dump -Fd -j N into a "
                      "temporary directory there (the compressed dump's "
                      "size in disk on both hosts), sends each table as soon "
                      "as it is dumped, and restores once all has arrived: "
                      "a parallel dump for a fast network and a remote host "
                      "with spare cores."),
    click.option("--compress", type=click.IntRange(0, 9), default=None,
                 metavar="0-9",
                 help="zlib level of the remote pg_dump (-Z). By default a "
                      "custom dump goes compressed by zstd -1 when both "
                      "hosts have zstd (less data and less CPU than "
                      "pg_dump's zlib), else by pg_dump -Z1, as does a "
                      "directory dump or one kept with --keep-dump. Giving "
                      "a level uses pg_dump's zlib: 0 can be faster between "
                      "two hosts on a fast LAN with spare CPU, 6 or more on "
                      "a slow link."),
    click.option("--remote-tmpdir", metavar="DIR",
                 help="With --remote-format directory: where the remote "
                      "host writes the dump (default: its $TMPDIR, else "
                      "/tmp); removed when the transfer ends, however it "
                      "ends."),
    click.option("--replace", is_flag=True,
                 help="Replace a target database that already has tables; the "
                      "old one is renamed to <db>__before_import_<UTC time>."),
    click.option("--drop-old", is_flag=True,
                 help="With --replace: drop the old database instead of "
                      "keeping it (with migrate --from, the previous search "
                      "core too)."),
    click.option("--wait", is_flag=True,
                 help="If another import into the same database is running, "
                      "wait for it to finish instead of refusing."),
    click.option("--keep-failed", is_flag=True,
                 help="If the load or (with migrate --from) a later step "
                      "fails, keep the staging database for inspection, "
                      "renamed <db>__failed_import_<UTC time>, instead of "
                      "dropping it. The site's database is unchanged "
                      "either way."),
    click.option("--admin-url-env", default="DATAGOVUK_PG_ADMIN_URL",
                 show_default=True, metavar="VAR",
                 help="Name of an environment variable holding a superuser "
                      "database URL, used only when the CKAN database user "
                      "lacks CREATEDB (or for extensions only a superuser may "
                      "create). The URL itself is never an argument."),
]
# The options of ``import``, shared with ``migrate --from``.
import_options = option_group(IMPORT_GROUP, _IMPORT_OPTIONS)


def import_options_from(ctx: click.Context, remote_db, ssh_port, identity,
                        ssh_config, ssh_options, remote_pg_dump, keep_dump,
                        jobs, remote_format, compress, remote_tmpdir,
                        replace, drop_old, wait, keep_failed,
                        admin_url_env):
    import os

    from ckanext.datagovuk import transfer

    admin_url = os.environ.get(admin_url_env) or None
    explicit = ctx.get_parameter_source("admin_url_env") \
        != click.core.ParameterSource.DEFAULT
    if explicit and not admin_url:
        raise click.UsageError(f"--admin-url-env {admin_url_env}: that "
                               "environment variable is not set")
    return transfer.ImportOptions(
        remote_db=remote_db, remote_pg_dump=remote_pg_dump,
        keep_dump=keep_dump, jobs=jobs, compression=compress,
        remote_format=remote_format, remote_tmpdir=remote_tmpdir,
        replace=replace, drop_old=drop_old, wait=wait,
        keep_failed=keep_failed, admin_url=admin_url,
        ssh=transfer.SshSettings(port=ssh_port, identity_file=identity,
                                options=list(ssh_options),
                                config_file=ssh_config))


def check_import_usage(source_text: str, options) -> None:
    """Refuse, before anything runs, a SOURCE the import cannot read and
    options that contradict each other or the source: a usage error, exit
    status 2, with nothing printed or changed."""
    from ckanext.datagovuk import transfer

    try:
        transfer.check_usage(source_text, options)
    except OperatorError as error:
        raise click.UsageError(str(error)) from error


def config_path(ctx) -> str | None:
    """The config file in use, for the commands a report suggests."""
    configured = ctx.find_object(ConfiguredDatabase)
    if configured is not None and configured.config_path:
        return configured.config_path
    from ckan.common import config
    return config.get("__file__")


def configured_url(ctx) -> str:
    """The site's database URL without touching the database (--plan)."""
    from ckan.common import config

    configured = ctx.find_object(ConfiguredDatabase)
    return configured.url if configured else config.get("sqlalchemy.url")
