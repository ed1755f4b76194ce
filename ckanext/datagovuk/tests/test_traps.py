"""The traps of CKAN's upgrade, found without changing anything and fixed
(real PostgreSQL, the generated old site)."""
from __future__ import annotations

import pytest

from ckanext.datagovuk import archive, traps, upgrade
from ckanext.datagovuk.testing import oldsite

KNOWN = oldsite.KNOWN_CASES


def trap_names(found):
    return {trap.name for trap in found}


def test_the_old_sites_traps_are_found_without_changing_anything(
        old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        found = traps.find_traps(conn)
    names = trap_names(found)
    assert {"null-package_extra-values", "null-group_extra-values",
            "orphan-resources", "related-items", "email-clashes"} <= names
    for index in oldsite.CONTINUITY_INDEXES:
        assert f"existing-index-{index}" in names


def test_fixes_remove_the_traps_and_the_upgrade_then_succeeds(old_site,
                                                             engine_for):
    engine = engine_for(old_site)
    with engine.begin() as conn:
        fixes = traps.fix_traps(conn, [], "keep-oldest")
        left = trap_names(traps.find_traps(conn))
        # orphans and related rows are dealt with by upgrade and archive
        assert left == {"orphan-resources", "related-items"}
        cleared = conn.exec_driver_sql(
            "SELECT user_id, kept_by FROM datagovuk.email_clash_resolutions"
        ).all()
        archive.archive(conn, [])
        upgrade.upgrade(conn)
    assert {fix.name for fix in fixes} >= {
        "null-package_extra-values", "email-clashes"}
    assert len(cleared) == 2        # one per clashing pair on the raw site


def test_clashing_emails_need_a_decision(old_site, engine_for):
    with engine_for(old_site).connect() as conn:
        users = dict(conn.exec_driver_sql(
            'SELECT name, id FROM "user"').all())
        conn.rollback()
        with pytest.raises(traps.EmailClashError) as raised:
            with conn.begin():
                traps.fix_traps(conn)
    message = str(raised.value)
    assert "\n" not in message
    for name in KNOWN.email_case_clash_kept_pair:
        assert users[name] in message
    assert "--resolve-email-clash keep-oldest" in message


def test_blank_emails_of_active_users_become_null(old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql(
            "UPDATE \"user\" SET email = '' WHERE id IN (SELECT id FROM "
            "\"user\" WHERE state = 'active' ORDER BY id LIMIT 3)")
        assert "blank-emails" in trap_names(traps.find_traps(conn))
        fixes = traps.fix_traps(conn, [], "keep-oldest")
        assert [fix.rows for fix in fixes if fix.name == "blank-emails"] \
            == [3]
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM \"user\" WHERE email = ''").scalar() == 0


def test_a_table_the_upgrade_creates_is_moved_out_of_the_way(old_site,
                                                            engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE resource_view (id text)")
        assert "existing-table-resource_view" in trap_names(
            traps.find_traps(conn))
        traps.fix_traps(conn, [], "keep-oldest")
        assert conn.exec_driver_sql(
            "SELECT to_regclass('datagovuk_legacy.resource_view') IS NOT NULL"
        ).scalar()


def test_tracking_duplicates_are_removed_before_its_primary_key(
        old_site, engine_for):
    with engine_for(old_site).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tracking_raw (user_key, url, tracking_type, "
            "access_timestamp) VALUES ('k', '/d', 'page', '2017-01-01'), "
            "('k', '/d', 'page', '2017-01-01')")
        assert "tracking-raw-duplicates" not in trap_names(
            traps.find_traps(conn))          # plugin not enabled
        assert "tracking-raw-duplicates" in trap_names(
            traps.find_traps(conn, ["tracking"]))
        traps.fix_traps(conn, ["tracking"], "keep-oldest")
        archive.archive(conn, ["tracking"])
        result = upgrade.upgrade(conn, ["tracking"])
    assert "tracking" in result.plugins


def test_each_trap_guards_revisions_or_filters_them_itself():
    # A trap whose revisions are empty must be one that looks at which
    # revisions run itself (the existing indexes and tables) or is gated by
    # a plugin.
    for trap in traps.REGISTRY:
        assert trap.revisions or trap.plugin or trap.detect in (
            traps.existing_indexes, traps.existing_tables), trap.name
        assert (trap.fix is None) == bool(trap.fixed_elsewhere), trap.name


def test_a_decided_email_clash_is_not_reported_as_needing_a_decision(
        old_site, engine_for):
    with engine_for(old_site).connect() as conn:
        undecided = {trap.name: trap.fix for trap in traps.find_traps(conn)}
        decided = {trap.name: trap.fix for trap in
                   traps.find_traps(conn, [], "keep-oldest")}
    assert undecided["email-clashes"].startswith("needs a decision")
    assert decided["email-clashes"].startswith(
        "decided by --resolve-email-clash keep-oldest")
