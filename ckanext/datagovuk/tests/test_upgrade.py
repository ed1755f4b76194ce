"""CKAN's schema upgrade of a 2.2 database on our connection: the fix for
resources losing their dataset at revision 074, plugin migrations, and
rollback (real PostgreSQL, CKAN's real migration scripts)."""
from __future__ import annotations

import io
import os

import pytest
from sqlalchemy import create_engine, exc, inspect
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import alembic_runner, output, upgrade
from ckanext.datagovuk.tests.conftest import (create_database,
                                              drop_database, dump_database)

SEED = """
INSERT INTO revision (id, timestamp, author, state)
    VALUES ('rev1', now(), 'tester', 'active');
INSERT INTO package (id, name, title, state, type, revision_id) VALUES
    ('p1', 'kept', 'Kept', 'active', 'dataset', 'rev1'),
    ('p2', 'deleted', 'Deleted', 'deleted', 'dataset', 'rev1');
INSERT INTO resource_group (id, package_id, label, state, revision_id) VALUES
    ('g1', 'p1', 'default', 'active', 'rev1'),
    ('g2', 'p2', 'default', 'active', 'rev1'),
    ('g3', NULL, 'lost', 'active', 'rev1');
INSERT INTO resource (id, url, description, state, resource_group_id,
                      revision_id, position) VALUES
    ('r1', 'http://a/1', 'one', 'active', 'g1', 'rev1', 0),
    ('r2', 'http://a/2', 'two', 'active', 'g1', 'rev1', 1),
    ('r3', 'http://a/3', 'three', 'deleted', 'g2', 'rev1', 0),
    ('r4', 'http://a/4', 'orphan', 'active', 'g3', 'rev1', 0);
INSERT INTO resource_revision (id, url, state, resource_group_id,
                               continuity_id, revision_id, current)
    SELECT id, url, state, resource_group_id, id, 'rev1', true FROM resource;
"""


@pytest.fixture(scope="module")
def ckan22_template(pg_admin_url, ckan_db_url):
    """A template database with CKAN 2.2's bare schema (legacy version 71)
    and a few resources, one of them in a resource group with no dataset."""
    name = f"ckan22_{os.getpid()}"
    drop_database(pg_admin_url, name)
    engine = create_engine(create_database(pg_admin_url, ckan_db_url, name),
                           poolclass=NullPool)
    with engine.begin() as conn:
        alembic_runner.upgrade(conn, alembic_runner.CKAN_22_REVISION)
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql(
            "CREATE TABLE migrate_version (repository_id varchar(250) "
            "PRIMARY KEY, repository_path text, version integer)")
        conn.exec_driver_sql(
            "INSERT INTO migrate_version VALUES ('Ckan', '', 71)")
        conn.exec_driver_sql(SEED)
    yield name
    drop_database(pg_admin_url, name)


@pytest.fixture
def ckan22(make_database, ckan22_template):
    url = make_database(template=ckan22_template)
    engine = create_engine(url, poolclass=NullPool)
    yield url, engine
    engine.dispose()


def test_ckans_own_upgrade_fails_on_a_22_database_with_resources(ckan22):
    """The bug the fix is for: CKAN's port of 074 loses the link."""
    url, engine = ckan22
    with engine.connect() as conn:
        with pytest.raises(exc.IntegrityError,
                           match="resource_package_id_fkey"):
            with conn.begin():
                alembic_runner.upgrade(conn, "head", legacy=71)


def test_upgrade_keeps_each_resource_with_its_dataset(ckan22):
    url, engine = ckan22
    # On a terminal with -v: the revision, n of N, in one line rewritten,
    # between the detail lines.
    shown = io.StringIO()
    progress = output.Progress(output.VERBOSE, stream=shown, tty=True)
    with engine.begin() as conn:
        result = upgrade.upgrade(conn, progress=progress)
    total = len(result.revisions)
    assert f"\r\x1b[Kschema upgrade: core revision {total} of {total}" \
        in shown.getvalue()
    steps = shown.getvalue().splitlines()
    assert result.version_before == "legacy 71"
    assert result.version_after == f"alembic {alembic_runner.head()} (head)"
    assert (result.resources_relinked, result.orphan_resources_deleted) \
        == (3, 1)
    assert result.orphan_resource_revisions_deleted == 1
    with engine.connect() as conn:
        links = dict(conn.exec_driver_sql(
            "SELECT id, package_id FROM resource").all())
        assert not inspect(conn).has_table("resource_group")
        assert not inspect(conn).has_table("migrate_version")
    assert links == {"r1": "p1", "r2": "p1", "r3": "p2"}
    revisions = [step.revision for step in result.revisions]
    assert revisions.index(upgrade.REMOVE_RESOURCE_GROUPS) < \
        revisions.index("4a5e3465beb6")          # 105, the foreign key
    assert all(step.seconds >= 0 for step in result.revisions)
    assert any("relinked 3 resources" in line for line in steps)
    # Revision 107 drops resource_revision in the same upgrade.
    assert result.resource_revisions_relinked == 0
    assert any("not their revisions, which revision 107 drops" in line
               for line in steps)
    assert any(upgrade.REMOVE_RESOURCE_GROUPS in line for line in steps)


def test_room_for_rewrites_makes_whole_table_updates_hot_then_is_reset(
        ckan22):
    url, engine = ckan22
    storage = ("SELECT c.relname, c.reloptions, i.indisclustered "
               "FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid "
               "AND i.indisprimary WHERE c.relname IN ('package', "
               "'resource') ORDER BY 1")
    with engine.connect() as conn, conn.begin():
        made = upgrade.make_room_for_rewrites(conn)
        assert [(room.table, room.fillfactor) for room in made] == [
            ("package", 25), ("resource", 33)]
        assert conn.exec_driver_sql(storage).all() == [
            ("package", ["fillfactor=25"], True),
            ("resource", ["fillfactor=33"], True)]
        conn.exec_driver_sql("UPDATE package SET url = 'http://a'")
        conn.exec_driver_sql("UPDATE package SET notes = 'x'")
        assert conn.exec_driver_sql(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relname = 'package'").one() == (4, 4)
        upgrade.reset_room(conn, made)
        assert conn.exec_driver_sql(storage).all() == [
            ("package", None, False), ("resource", None, False)]
        # Nothing else moved: the upgrade still runs on the rewritten tables.
        result = upgrade.upgrade(conn)
        assert result.resources_relinked == 3


def test_no_room_is_made_when_no_rewriting_revision_is_pending(
        make_database, ckan_head_template):
    url = make_database(template=ckan_head_template)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            assert upgrade.make_room_for_rewrites(conn) == []
    finally:
        engine.dispose()


def test_plugin_migrations_run_against_their_own_version_tables(ckan22):
    url, engine = ckan22
    with engine.begin() as conn:
        result = upgrade.upgrade(conn, ["activity", "tracking", "datagovuk"])
    assert set(result.plugins) == {"activity", "tracking"}
    with engine.connect() as conn:
        for plugin in ("activity", "tracking"):
            scripts = upgrade.plugin_migration_dir(plugin)
            assert alembic_runner.current_revision(
                conn, upgrade.plugin_version_table(plugin)) == \
                alembic_runner.head(scripts)
        columns = {c["name"] for c in inspect(conn).get_columns("activity")}
    assert "permission_labels" in columns
    sources = {step.source for step in result.revisions}
    assert sources == {"core", "activity", "tracking"}


def test_plugin_migration_dirs_are_found_as_ckan_finds_them():
    assert upgrade.plugin_migration_dir("activity").endswith(
        os.path.join("ckanext", "activity", "migration", "activity"))
    assert upgrade.plugin_migration_dir("datagovuk") is None
    assert upgrade.plugin_migration_dir("no_such_plugin") is None


def test_a_rolled_back_upgrade_leaves_the_database_as_it_was(ckan22):
    url, engine = ckan22
    before = dump_database(url)
    with engine.connect() as conn:
        transaction = conn.begin()
        upgrade.upgrade(conn, ["activity"])
        transaction.rollback()
    assert dump_database(url) == before


def test_upgrading_a_database_at_head_does_nothing(make_database,
                                                  ckan_head_template):
    url = make_database(template=ckan_head_template)
    engine = create_engine(url, poolclass=NullPool)
    before = dump_database(url)
    with engine.begin() as conn:
        assert not upgrade.resource_group_fix_needed(conn, None)
        result = upgrade.upgrade(conn)
    engine.dispose()
    assert result.revisions == []
    assert result.version_before == result.version_after
    assert dump_database(url) == before


def test_with_plugins_the_schema_equals_a_fresh_one_with_them(
        old_site, make_database):
    """As `ckan db init` with activity and tracking enabled: core to head,
    then each plugin's migrations."""
    from ckanext.datagovuk import migrate, runner

    plugins = ["activity", "tracking"]
    migrate.migrate(old_site, plugins, runner.settings_from_config(),
                    migrate.MigrationOptions(resolve_email_clash="keep-oldest"))
    fresh = make_database()
    engine = create_engine(fresh, poolclass=NullPool)
    with engine.begin() as conn:
        alembic_runner.upgrade(conn, "head")
        upgrade.upgrade_plugins(conn, plugins,
                                upgrade.UpgradeResult("", ""))
    engine.dispose()
    assert dump_database(old_site, "-s", "-n", "public") == \
        dump_database(fresh, "-s", "-n", "public")
