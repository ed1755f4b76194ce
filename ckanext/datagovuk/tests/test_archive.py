"""The archive schema datagovuk_legacy, on copies of the generated old site
(real PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import archive
from ckanext.datagovuk.errors import OperatorError

KNOWN = {"package", "resource", "user", "group", "member"}


def test_classify_moves_unknown_tables_and_copies_dropped_ones():
    tables = ["package", "resource", "codelist", "harvest_source",
              "package_revision", "related", "activity", "tracking_raw",
              "harvest_alembic_version", "package_extent"]
    move, copy = archive.classify(tables, [], KNOWN)
    assert move == ["codelist", "harvest_source", "package_extent"]
    assert copy == ["package_revision", "related"]


def test_classify_keeps_harvest_tables_when_harvest_is_enabled():
    move, _ = archive.classify(["harvest_source", "codelist"], ["harvest"],
                               KNOWN)
    assert move == ["codelist"]


def test_classify_moves_dropped_tables_whose_revision_already_ran():
    # e.g. `related` kept by an earlier run of revision 083 (it was not empty)
    move, copy = archive.classify(["related", "package_revision"], [], KNOWN,
                                  running={107})
    assert move == ["related"] and copy == ["package_revision"]


@pytest.fixture
def old_site_engine(old_site):
    engine = create_engine(old_site, poolclass=NullPool)
    yield engine
    engine.dispose()


def counts(conn, schema, tables):
    return {table: conn.exec_driver_sql(
        f'SELECT count(*) FROM {schema}."{table}"').scalar()
        for table in tables}


def foreign_keys_across_schemas(conn) -> int:
    return conn.exec_driver_sql("""
        SELECT count(*) FROM pg_constraint c
        JOIN pg_class s ON s.oid = c.conrelid
        JOIN pg_class t ON t.oid = c.confrelid
        WHERE c.contype = 'f' AND s.relnamespace <> t.relnamespace""").scalar()


def test_archive_moves_dgu_and_harvest_tables_and_copies_history(
        old_site_engine):
    with old_site_engine.begin() as conn:
        moved_tables = list(archive.DGU_TABLES) + [
            t for t in archive.HARVEST_TABLES
            if t in archive.public_tables(conn)]
        before = counts(conn, "public", moved_tables)
        history = counts(conn, "public", ["revision", "package_revision",
                                          "related", "related_dataset"])
        result = archive.archive(conn, [])
        assert counts(conn, archive.LEGACY_SCHEMA, moved_tables) == before
        assert counts(conn, archive.LEGACY_SCHEMA, history) == history
        assert not set(moved_tables) & set(archive.public_tables(conn))
        # revision 083 only drops the related tables when they are empty
        assert counts(conn, "public", ["related", "related_dataset"]) == \
            {"related": 0, "related_dataset": 0}
        assert result.emptied == {"related": history["related"],
                                  "related_dataset":
                                      history["related_dataset"]}
        assert foreign_keys_across_schemas(conn) == 0
        assert result.foreign_keys_dropped
    assert {t.name for t in result.named("moved")} == set(moved_tables)
    copied = {t.name for t in result.named("copied")}
    assert "revision" in copied and set(archive.TAG_TABLES) <= copied


def test_with_harvest_enabled_the_harvest_tables_stay(old_site_engine):
    with old_site_engine.begin() as conn:
        archive.archive(conn, ["harvest"])
        public = archive.public_tables(conn)
    assert "harvest_source" in public and "codelist" not in public


def test_no_archive_moves_unknown_tables_but_copies_no_history(
        old_site_engine):
    with old_site_engine.begin() as conn:
        result = archive.archive(conn, [], archive_dropped=False)
        legacy = set(conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = %(s)s",
            {"s": archive.LEGACY_SCHEMA}).scalars())
    assert set(archive.DGU_TABLES) <= legacy
    assert "revision" not in legacy
    # related rows must leave public all the same, so they are kept
    assert {"related", "related_dataset"} <= legacy
    assert {t.name for t in result.named("copied")} == {"related",
                                                        "related_dataset"}


def test_archiving_twice_keeps_the_first_copies(old_site_engine):
    with old_site_engine.begin() as conn:
        tags = conn.exec_driver_sql("SELECT count(*) FROM tag").scalar()
        archive.archive(conn, [])
        # what a data migration between two runs (--skip-upgrade) does
        conn.exec_driver_sql("TRUNCATE package_tag_revision, package_tag, tag")
        again = archive.archive(conn, [])
        assert again.named("moved") == [] and again.named("copied") == []
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM datagovuk_legacy.tag").scalar() == tags > 0


def test_a_name_taken_in_the_archive_is_refused(old_site_engine):
    with old_site_engine.connect() as conn:
        with conn.begin():
            conn.exec_driver_sql("CREATE SCHEMA datagovuk_legacy")
            conn.exec_driver_sql("CREATE TABLE datagovuk_legacy.codelist "
                                 "(id int)")
        with pytest.raises(OperatorError, match="datagovuk_legacy.codelist "
                                                "already exists"):
            with conn.begin():
                archive.archive(conn, [])
