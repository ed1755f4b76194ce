"""``datagovuk status`` on the real PostgreSQL.

The states of a real move are checked through ``--json`` of the real
command: a generated old site before the migration, after ``migrate
--skip-upgrade``, after the full ``migrate`` and after ``promote
--demoted``.  Exact counts, checksums and plugin migrations are checked by
calling ``status.collect`` in this process on databases built with SQL (a
CKAN command costs seconds to start).  The search index's count is read
from the session's Solr core, or from a private one where a reindex swaps
its live core.
"""
from __future__ import annotations

import datetime as dt
import json
import shlex

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import migrate, runner, status
from ckanext.datagovuk.search.solr import site_query
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.conftest import (
    TEST_INI, ckan_datagovuk, dump_database, paster_datagovuk,
    put_another_extensions_row_first, run_command)
from ckanext.datagovuk.tests.conftest import run_sql as execute

SITE_USER = "test.ckan.net"   # ckan.site_id of test.ini
MIGRATE = ["migrate", "--resolve-email-clash", "keep-oldest"]


def status_json(url: str, run=ckan_datagovuk) -> dict:
    result = run(["status", "--json"], db_url=url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def shipped_migrations() -> list[str]:
    return [migration.name for migration in runner.discover()]


def collect(url: str, **options) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    try:
        options.setdefault("plugins", [])
        options.setdefault("site_user", SITE_USER)
        return status.collect(engine, **options)
    finally:
        engine.dispose()


# --- the states of a whole move, through the real command -------------------

@pytest.fixture(scope="module")
def journey(make_module_database, old_site_template, ckan_solr_url):
    """The status JSON of one old site at each step of the move."""
    url = make_module_database(template=old_site_template)
    states = {"before": status_json(url)}

    result = ckan_datagovuk(["migrate", "--skip-upgrade"], db_url=url)
    assert result.returncode == 0, result.stderr
    states["skip_upgrade"] = status_json(url)
    states["demoted"] = dict(execute(
        url, "SELECT user_id, user_name FROM datagovuk.demoted_sysadmins"))

    result = ckan_datagovuk(MIGRATE, db_url=url)
    assert result.returncode == 0, result.stderr
    states["migrated"] = status_json(url)
    text = paster_datagovuk(["status"], db_url=url)
    assert text.returncode == 0, text.stderr
    states["migrated_text"] = text.stdout

    result = ckan_datagovuk(["promote", "--demoted"], db_url=url)
    assert result.returncode == 0, result.stderr
    # Other tests may have left documents of this site id (every test
    # database shares it) in the session's core: by chance as many as this
    # database holds.  None is what test_after_promotion expects.
    forget_site_documents(ckan_solr_url)
    states["promoted"] = status_json(url)
    return states


def forget_site_documents(core_url: str) -> None:
    from ckan.common import config

    reply = requests.post(f"{core_url}/update", params={"commit": "true"},
                          json={"delete": {"query": site_query(
                              config["ckan.site_id"])}}, timeout=60)
    reply.raise_for_status()


def test_old_site_before_migration(journey):
    state = journey["before"]

    database = state["database"]
    assert database["kind"] == "legacy"
    assert database["is_ckan"] is True
    assert database["legacy_version"] == oldsite.LEGACY_VERSION
    assert database["alembic_revision"] is None
    assert database["pending_core_migrations"] is True
    # CKAN's revisions after legacy 071, up to its head.
    assert database["pending_core_count"] == (database["head_number"]
                                              - oldsite.LEGACY_VERSION)
    assert state["data_migrations"] == {
        "applied": [], "pending": shipped_migrations(), "changed": [],
        "applicable": True}
    assert state["demotions_recorded"] is False
    assert state["demoted_not_promoted"] == []
    # The site user is CKAN's own, not counted.
    assert state["counts"]["sysadmins"] == len(oldsite.KNOWN_CASES.sysadmins) - 1
    assert state["counts"]["datasets"] > 0
    assert state["counts"]["organisations"] > 0
    # The generated site has active users whose emails differ only in
    # case: migrate would stop on them, so status explains the choice.
    assert state["next"] is None
    assert state["next_command"] is None
    assert "email address(es) are shared" in state["next_reason"]
    assert (f"ckan -c {TEST_INI} datagovuk migrate --resolve-email-clash "
            "keep-oldest") in state["next_reason"]


def test_after_migrate_skip_upgrade(journey):
    before, state = journey["before"], journey["skip_upgrade"]

    assert state["database"]["kind"] == "legacy"
    assert state["database"]["pending_core_migrations"] is True
    checksums = {m.name: m.checksum for m in runner.discover()}
    applied = state["data_migrations"]["applied"]
    assert [entry["file"] for entry in applied] == shipped_migrations()
    for entry in applied:
        assert entry["checksum"] == checksums[entry["file"]]
        assert entry["checksum_matches"] is True
        applied_at = dt.datetime.fromisoformat(entry["applied_at"])
        assert abs(dt.datetime.now(dt.timezone.utc) - applied_at) < dt.timedelta(hours=1)
    assert state["data_migrations"]["pending"] == []
    assert state["demotions_recorded"] is True
    assert ({user["id"]: user["name"] for user in state["demoted_not_promoted"]}
            == journey["demoted"])
    assert state["counts"]["sysadmins"] == 0
    # 001 deletes non-publishing users, and no dataset or publisher.
    assert state["counts"]["users"] < before["counts"]["users"]
    assert state["counts"]["datasets"] == before["counts"]["datasets"]
    assert state["counts"]["organisations"] == before["counts"]["organisations"]
    # The publishing users whose emails clash are kept by 001.
    assert state["next"] is None
    assert "email address(es) are shared" in state["next_reason"]


def test_after_full_migrate(journey):
    state = journey["migrated"]

    database = state["database"]
    assert database["kind"] == "alembic"
    assert database["legacy_version"] is None
    assert database["alembic_revision"] == database["head"]
    assert database["at_head"] is True
    assert database["pending_core_migrations"] is False
    assert database["pending_core_count"] == 0
    assert database["pending_plugin_migrations"] == {}
    assert state["data_migrations"]["pending"] == []
    assert (state["data_migrations"]["applied"]
            == journey["skip_upgrade"]["data_migrations"]["applied"])
    assert ({user["id"] for user in state["demoted_not_promoted"]}
            == set(journey["demoted"]))
    assert state["counts"]["sysadmins"] == 0
    assert state["counts"]["datasets"] == journey["before"]["counts"]["datasets"]
    assert state["next"] == "promote --demoted"
    assert state["next_command"] == (f"ckan -c {TEST_INI} datagovuk promote "
                                     "--demoted")


def test_after_full_migrate_text_through_paster(journey):
    text = journey["migrated_text"]
    head = journey["migrated"]["database"]["head"]

    assert f"CKAN alembic revision 109 {head} (CKAN's head)" in text
    assert "Core migrations:     none pending" in text
    names = sorted(journey["demoted"].values())
    assert f"To promote again:    {', '.join(names)}" in text
    assert (f"Next:                ckan -c {TEST_INI} datagovuk promote "
            "--demoted") in text


def test_after_promotion(journey):
    state = journey["promoted"]

    assert state["demotions_recorded"] is True
    assert state["demoted_not_promoted"] == []
    assert state["counts"]["sysadmins"] == len(journey["demoted"])
    # The session's Solr core holds none of this database's datasets.
    assert state["search_index"]["datasets"] > 0
    assert state["search_index"]["indexed"] != state["search_index"]["datasets"]
    assert state["next"] == "reindex"
    assert state["next_command"] == f"ckan -c {TEST_INI} datagovuk reindex"


def test_an_empty_database_needs_an_import(make_database):
    state = status_json(make_database())

    assert state["database"]["kind"] == "empty"
    assert state["database"]["is_ckan"] is False
    assert state["counts"] is None
    assert state["data_migrations"]["applied"] == []
    assert state["next"] == "import"
    assert state["next_command"] == (f"ckan -c {TEST_INI} datagovuk import "
                                     "SOURCE")


# --- details, in this process -----------------------------------------------

def add_rows(url: str) -> None:
    """Rows whose counts are known, in columns CKAN 2.2 and 2.12 share."""
    for id_, type_, state in [("d1", "dataset", "active"),
                              ("d2", None, "active"),
                              ("d3", "dataset", "active"),
                              ("d4", "dataset", "deleted"),
                              ("d5", "dataset", "draft"),
                              ("h1", "harvest", "active")]:
        execute(url, "INSERT INTO package (id, name, type, state, private) "
                "VALUES (%s, %s, %s, %s, %s)", (id_, f"pkg-{id_}", type_,
                                                state, id_ == "d3"))
    for id_, is_org, state in [("o1", True, "active"), ("o2", True, "active"),
                               ("o3", True, "deleted"), ("g1", False, "active")]:
        execute(url, 'INSERT INTO "group" (id, name, type, is_organization, '
                "state) VALUES (%s, %s, %s, %s, %s)",
                (id_, f"grp-{id_}", "organization" if is_org else "group",
                 is_org, state))
    for name, state, sysadmin in [("alice", "active", True),
                                  ("bob", "active", False),
                                  ("carol", "pending", False),
                                  ("dave", "deleted", True),
                                  ("logged_in", "active", False),
                                  ("visitor", "active", False),
                                  (SITE_USER, "active", True)]:
        execute(url, 'INSERT INTO "user" (id, name, state, sysadmin) '
                "VALUES (%s, %s, %s, %s)", (f"id-{name}", name, state, sysadmin))


EXPECTED_COUNTS = {"datasets": 3, "organisations": 2, "users": 2,
                   "sysadmins": 1}


@pytest.fixture
def legacy_site(make_database):
    url = make_database()
    oldsite.build_schema(url, harvest=False)
    add_rows(url)
    return url


@pytest.fixture
def head_site(make_database, ckan_head_template):
    url = make_database(template=ckan_head_template)
    add_rows(url)
    return url


@pytest.mark.parametrize("site", ["legacy_site", "head_site"])
def test_counts_on_both_schemas(request, site):
    state = collect(request.getfixturevalue(site))

    assert state["counts"] == EXPECTED_COUNTS


def test_status_changes_nothing(legacy_site):
    before = dump_database(legacy_site)

    collect(legacy_site)

    assert dump_database(legacy_site) == before


def ledger(url: str, rows) -> None:
    runner_ledger = """
        CREATE SCHEMA IF NOT EXISTS datagovuk;
        CREATE TABLE IF NOT EXISTS datagovuk.applied_migrations (
            filename text PRIMARY KEY, checksum text NOT NULL,
            applied_at timestamptz NOT NULL,
            duration_seconds double precision NOT NULL)"""
    execute(url, runner_ledger)
    for name, checksum in rows:
        execute(url, "INSERT INTO datagovuk.applied_migrations VALUES "
                "(%s, %s, now(), 0.5)", (name, checksum))


def test_applied_pending_and_changed_files(head_site, tmp_path):
    for name in ("001_first.sql", "002_second.sql", "003_third.sql"):
        (tmp_path / name).write_text(f"-- {name}\n")
    first = runner.checksum_of(str(tmp_path / "001_first.sql"))
    ledger(head_site, [("001_first.sql", first),
                       ("002_second.sql", "0" * 64)])

    state = collect(head_site, migrations_dir=str(tmp_path))

    data = state["data_migrations"]
    assert [(e["file"], e["checksum"], e["checksum_matches"])
            for e in data["applied"]] == [("001_first.sql", first, True),
                                          ("002_second.sql", "0" * 64, False)]
    assert data["pending"] == ["003_third.sql"]
    assert data["changed"] == ["002_second.sql"]
    # migrate refuses a changed file: nothing to run until it is restored.
    assert state["next"] is None and state["next_command"] is None
    assert "002_second.sql" in state["next_reason"]
    assert "FILE CHANGED SINCE" in status.format_text(state)


def test_a_head_database_with_everything_applied_needs_its_index(head_site,
                                                                clean_index):
    ledger(head_site, [(m.name, m.checksum) for m in runner.discover()])

    state = collect(head_site)

    assert state["data_migrations"]["pending"] == []
    assert state["demotions_recorded"] is False
    # add_rows' packages, none of them in the (emptied) session core.
    assert state["search_index"] == {"datasets": 5, "unindexable": 0, "indexed": 0,
                                     "problem": None}
    assert state["next"] == "reindex"
    assert state["next_reason"] == ("the search index holds 0 datasets, "
                                    "the database 5")
    assert "Search index:        0 datasets (the database: 5)" in \
        status.format_text(state)


@pytest.mark.ckan_config("ckan.plugins", "activity")
@pytest.mark.usefixtures("with_plugins")
def test_pending_plugin_migrations_of_enabled_plugins(head_site):
    ledger(head_site, [(m.name, m.checksum) for m in runner.discover()])

    state = collect(head_site, plugins=["activity"])

    # ckan db init ran without the activity plugin: its 2 revisions wait.
    assert state["database"]["pending_plugin_migrations"] == {"activity": 2}
    assert state["database"]["pending_core_migrations"] is False
    assert state["next"] == "migrate"
    assert "activity" in state["next_reason"]


def test_a_database_of_something_else_is_not_ckan(make_database):
    url = make_database()
    execute(url, "CREATE TABLE invoices (id int)")

    state = collect(url)

    assert state["database"]["kind"] == "not-ckan"
    assert state["counts"] is None
    # An import would refuse a database with tables; replacing it is the
    # operator's call, so status explains instead.
    assert state["next"] is None
    assert "import SOURCE --replace" in state["next_reason"]
    assert "not a CKAN database" in status.format_text(state)


def test_tables_only_outside_public_are_not_an_empty_database(
        make_database):
    # What `import` counts too: it would refuse this one without --replace.
    url = make_database()
    execute(url, "CREATE SCHEMA billing; CREATE TABLE billing.invoices "
                 "(id int)")

    result = ckan_datagovuk(["status"], db_url=url)

    assert result.returncode == 0, result.stderr
    assert "Database:            not a CKAN database" in result.stdout
    assert "empty" not in result.stdout
    assert "import SOURCE --replace" in result.stdout


def test_ckans_legacy_version_when_another_extensions_row_comes_first(
        old_site):
    put_another_extensions_row_first(old_site)
    database = status_json(old_site)["database"]
    assert database["legacy_version"] == oldsite.LEGACY_VERSION
    assert database["pending_core_count"] == (database["head_number"]
                                              - oldsite.LEGACY_VERSION)


# --- what status recommends runs, in every state the tests build ------------

CLASHING_EMAILS_MADE_UNIQUE = """
    UPDATE "user" SET email = id || '@example.org'
    WHERE lower(email) IN (SELECT lower(email) FROM "user"
                           WHERE state = 'active' AND email <> ''
                           GROUP BY 1 HAVING count(*) > 1)"""


class States:
    """Builds each database state (a fresh database's URL) from the
    session's templates."""

    def __init__(self, request):
        self.fixture = request.getfixturevalue

    def copy(self, template_fixture: str, version=None) -> str:
        template = self.fixture(template_fixture)
        if version is not None:
            template = template[version]
        return self.fixture("make_database")(template=template)

    def empty(self):
        return self.fixture("make_database")()

    def not_ckan(self):
        url = self.empty()
        execute(url, "CREATE TABLE invoices (id int)")
        return url

    def empty_migrate_version(self):
        url = self.copy("legacy_site_templates", 71)
        execute(url, "DELETE FROM migrate_version")
        return url

    def legacy_version_no_ckan_had(self):
        url = self.legacy_82()
        execute(url, "UPDATE migrate_version SET version = 95")
        return url

    def old_site_emails_clash(self):
        return self.copy("old_site_template")

    def old_site(self):
        url = self.copy("old_site_template")
        execute(url, CLASHING_EMAILS_MADE_UNIQUE)
        return url

    def old_site_data_migrated(self):
        url = self.old_site()
        migrate.migrate(url, [], runner.settings_from_config(),
                        migrate.MigrationOptions(skip_upgrade=True))
        return url

    def legacy_82(self):
        url = self.copy("legacy_site_templates", 82)
        execute(url, CLASHING_EMAILS_MADE_UNIQUE)
        return url

    def new_site_never_migrated(self):
        return self.copy("ckan_head_template")

    def changed_ledger(self):
        url = self.copy("ckan_head_template")
        ledger(url, [(m.name, "0" * 64) for m in runner.discover()])
        return url

    def migrated(self):
        return self.copy("migrated_old_site_template")

    def promoted(self):
        url = self.migrated()
        result = ckan_datagovuk(["promote", "--demoted"], db_url=url)
        assert result.returncode == 0, result.stderr
        return url


# state -> the step status must recommend (None: it explains instead).
STATES = {
    "empty": "import",
    "not_ckan": None,
    "empty_migrate_version": None,
    "legacy_version_no_ckan_had": None,
    "old_site_emails_clash": None,
    "old_site": "migrate",
    "old_site_data_migrated": "migrate",
    "legacy_82": status.NO_DATA_MIGRATIONS,
    "new_site_never_migrated": status.NO_DATA_MIGRATIONS,
    "changed_ledger": None,
    "migrated": "promote --demoted",
    "promoted": "reindex",
}


def run_recommended(command: str, url: str, dump: str):
    """The recommended command line, made safe to run: migrate with
    --dry-run, import of ``dump`` with --plan."""
    args = shlex.split(command)
    assert args[:3] == ["ckan", "-c", TEST_INI], command
    if args[3:5] == ["datagovuk", "migrate"]:
        args.append("--dry-run")
    if args[3:5] == ["datagovuk", "import"]:
        args = [dump if arg == "SOURCE" else arg for arg in args] + ["--plan"]
    return run_command(args, db_url=url)


@pytest.mark.parametrize("state_name", list(STATES))
def test_the_recommended_command_succeeds(request, state_name, old_site_dump):
    url = getattr(States(request), state_name)()

    state = collect(url, config_path=TEST_INI)

    assert state["next"] == STATES[state_name], state["next_reason"]
    assert state["next_reason"]
    if state["next"] is None:
        assert state["next_command"] is None
        assert "Next:                nothing to run, because:" in \
            status.format_text(state)
        return
    assert state["next_command"] == status.command_line(state["next"],
                                                        TEST_INI)
    if state["next"] == "reindex":
        return  # it would swap the session's core: see test_status_of_the_index
    result = run_recommended(state["next_command"], url, old_site_dump)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_empty_migrate_version_is_explained_not_counted(request):
    url = States(request).empty_migrate_version()

    state = collect(url)
    text = status.format_text(state)

    assert state["database"]["pending_core_count"] is None
    assert "version None" not in text and "109 pending" not in text
    assert "legacy CKAN schema at an unknown version" in text
    assert "migrate_version has no row for CKAN itself" in text
    assert state["next_command"] is None


def test_status_names_the_config_in_use(make_database):
    state = status_json(make_database())

    assert state["next_command"] == (f"ckan -c {TEST_INI} datagovuk import "
                                     "SOURCE")


def test_status_tells_whether_the_data_migrations_apply(request):
    states = States(request)

    old = collect(states.old_site())
    legacy = collect(states.legacy_82())

    assert old["data_migrations"]["applicable"] is True
    assert legacy["data_migrations"]["applicable"] is False
    assert "CKAN 2.2's tables, which this CKAN database at legacy " \
        "sqlalchemy-migrate version 82" in legacy["next_reason"]
    assert "--no-data-migrations skips them" in status.format_text(legacy)


def status_with_solr(url: str, solr) -> dict:
    return status_json(url, lambda args, db_url: ckan_datagovuk(
        args, db_url=db_url, env={"CKAN_SOLR_URL": solr.core_url()}))


def test_status_of_the_index_names_reindex_until_it_holds_every_dataset(
        make_database, migrated_old_site_template):
    """A private Solr: the reindex swaps its live core."""
    from ckanext.datagovuk.testing import localsolr

    url = make_database(template=migrated_old_site_template)
    # CKAN's own indexer fails on datasets with a relationship.
    execute(url, "DELETE FROM package_relationship")
    run_command(["ckan", "-c", TEST_INI, "datagovuk", "promote",
                 "--demoted"], db_url=url)
    with localsolr.start() as solr:
        before = status_with_solr(url, solr)
        result = run_command(["ckan", "-c", TEST_INI, "datagovuk", "reindex"],
                             db_url=url, env={"CKAN_SOLR_URL": solr.core_url()})
        assert result.returncode == 0, result.stderr
        after = status_with_solr(url, solr)
        solr.stop()
        down = status_with_solr(url, solr)

    datasets = before["search_index"]["datasets"]
    assert datasets > 100
    assert before["search_index"]["indexed"] == 0
    assert before["next_command"] == f"ckan -c {TEST_INI} datagovuk reindex"
    assert after["search_index"]["indexed"] == datasets
    assert after["next"] is None
    assert "unreachable" in down["search_index"]["problem"]
    assert down["next"] == "reindex"
