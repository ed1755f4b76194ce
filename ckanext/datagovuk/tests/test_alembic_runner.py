"""CKAN's real alembic revisions, driven on a connection we hold."""
import sqlalchemy as sa

from ckanext.datagovuk import alembic_runner, legacy


def engine_for(url):
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def table_names(connection):
    return set(sa.inspect(connection).get_table_names())


def test_builds_the_ckan_22_schema_and_reports_each_revision(make_database):
    steps = []
    with engine_for(make_database()).begin() as connection:
        before, after = alembic_runner.upgrade(
            connection, alembic_runner.CKAN_22_REVISION,
            on_step=lambda revision, doc, seconds: steps.append(revision))
        tables = table_names(connection)
    assert (before, after) == (None, alembic_runner.CKAN_22_REVISION)
    assert len(steps) == 71 and steps[-1] == alembic_runner.CKAN_22_REVISION
    assert {"resource_group", "package_revision", "user_object_role",
            "package_extra", "related", "rating"} <= tables
    assert len(tables) == 46


def test_upgrade_to_head_rolls_back_with_the_callers_transaction(make_database):
    engine = engine_for(make_database())
    with engine.begin() as connection:
        alembic_runner.upgrade(connection, alembic_runner.CKAN_22_REVISION)
    with engine.connect() as connection:
        transaction = connection.begin()
        pending = alembic_runner.pending_revisions(connection)
        assert pending[0] == "08dcb9233ad7"  # 072, the first after 2.2
        assert pending[-1] == alembic_runner.head()
        _, after = alembic_runner.upgrade(connection)
        assert after == alembic_runner.head()
        assert "resource_group" not in table_names(connection)
        transaction.rollback()
    with engine.connect() as connection:
        assert alembic_runner.current_revision(connection) == \
            alembic_runner.CKAN_22_REVISION
        assert "resource_group" in table_names(connection)


def test_legacy_version_makes_older_revisions_no_ops(make_database):
    engine = engine_for(make_database())
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE migrate_version (repository_id varchar(250) "
            "PRIMARY KEY, repository_path text, version integer);"
            "INSERT INTO migrate_version VALUES ('Ckan', '', 71)")
        assert legacy.ckan_legacy_version(connection) == 71
        # Revisions up to 071 are skipped, so on an empty database they
        # create nothing; 072 then fails for want of the tables they make.
        alembic_runner.upgrade(connection, alembic_runner.CKAN_22_REVISION,
                               legacy=71)
        assert table_names(connection) == {"migrate_version",
                                           "alembic_version"}
