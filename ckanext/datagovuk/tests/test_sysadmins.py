"""``datagovuk promote`` on the real PostgreSQL.

The acceptance cases run the real ``ckan`` and ``paster`` commands in a
subprocess on a generated old site after ``datagovuk migrate``.  The finer
cases of resolving users call ``sysadmins.promote`` in this process, with
CKAN's model bound to the test's database (a CKAN command costs seconds to
start), on copies of a database at CKAN's head schema into which the users
and the ledger rows the 001 migration would leave
(``datagovuk.demoted_sysadmins``) are inserted with SQL.  Nothing here
needs Solr, so nothing is mocked.
"""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from ckanext.datagovuk import sysadmins as promoting
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.tests.conftest import (TEST_INI, ckan_datagovuk,
                                              one_line_error, paster_datagovuk,
                                              run_command)
from ckanext.datagovuk.tests.conftest import run_sql as execute

SITE_USER = "test.ckan.net"   # ckan.site_id of test.ini
# name, state, sysadmin, email
PEOPLE = [
    ("alice", "active", False, "alice@example.org"),
    ("bob", "active", False, "bob@example.org"),
    ("carol", "active", True, "carol@example.org"),
    ("dave", "deleted", False, "dave@example.org"),
    ("erin", "active", False, "shared@example.org"),
    ("frank", "pending", False, "SHARED@example.org"),
    ("grace", "active", False, "grace@example.org"),
    ("heidi", "deleted", False, "heidi@example.org"),
    ("ivan", "active", True, "ivan@example.org"),
    ("judy", "active", False, "judy@example.org"),
    ("visitor", "active", False, None),
    (SITE_USER, "active", True, None),
]
# Recorded as demoted by the migration; since then heidi was deleted and
# ivan was made a sysadmin by hand.
DEMOTED = ["grace", "heidi", "ivan", "judy"]


def user_id(name: str) -> str:
    return f"id-{name}"


def add_people(url: str) -> None:
    for name, state, sysadmin, email in PEOPLE:
        execute(url, 'INSERT INTO "user" (id, name, state, sysadmin, email, '
                "created) VALUES (%s, %s, %s, %s, %s, now())",
                (user_id(name), name, state, sysadmin, email))


def record_demotions(url: str, names=DEMOTED) -> None:
    """The rows 001_bytemark_to_govuk.sql leaves (see contracts.md)."""
    execute(url, """
        CREATE SCHEMA IF NOT EXISTS datagovuk;
        CREATE TABLE IF NOT EXISTS datagovuk.demoted_sysadmins (
            user_id text PRIMARY KEY, user_name text NOT NULL,
            demoted_at timestamptz NOT NULL DEFAULT now(),
            migration text NOT NULL)""")
    for name in names:
        execute(url, "INSERT INTO datagovuk.demoted_sysadmins "
                "(user_id, user_name, migration) VALUES (%s, %s, %s)",
                (user_id(name), name, "001_bytemark_to_govuk.sql"))


def sysadmins(url: str) -> set[str]:
    return {name for (name,) in execute(
        url, 'SELECT name FROM "user" WHERE sysadmin AND state = \'active\'')}


def promotions(url: str) -> list[tuple[str, str, str]]:
    if not execute(url, "SELECT to_regclass('datagovuk.promotions')")[0][0]:
        return []
    return execute(url, "SELECT user_id, user_name, via "
                   "FROM datagovuk.promotions ORDER BY id")


def snapshot(url: str):
    """Everything a promotion may change."""
    users = execute(url, 'SELECT id, name, state, sysadmin FROM "user" '
                    "ORDER BY id")
    return users, promotions(url)


@pytest.fixture
def site(make_database, ckan_head_template):
    """A migrated site: CKAN's head schema, our people, recorded demotions."""
    url = make_database(template=ckan_head_template)
    add_people(url)
    record_demotions(url)
    return url


@pytest.fixture
def bind_ckan_model():
    """``bind(url)``: CKAN's model works on ``url`` for the rest of the
    test, as ``ckan -c`` binds it to the configured database."""
    import ckan.model as model

    original, engines = model.meta.engine, []

    def bind(url: str) -> str:
        engines.append(create_engine(url, poolclass=NullPool))
        model.init_model(engines[-1])
        return url

    yield bind
    model.Session.remove()
    if original is not None:
        model.init_model(original)
    for engine in engines:
        engine.dispose()


@pytest.fixture
def in_process(site, bind_ckan_model):
    return bind_ckan_model(site)


RUNNERS = {"ckan": ckan_datagovuk, "paster": paster_datagovuk}


@pytest.fixture
def migrated_site(make_database, migrated_old_site_template):
    """The generated old site after `datagovuk migrate`, plus two plain
    users alice and bob (inserted with SQL)."""
    url = make_database(template=migrated_old_site_template)
    for name in ("alice", "bob"):
        execute(url, 'INSERT INTO "user" (id, name, state, sysadmin, email, '
                "created) VALUES (%s, %s, 'active', false, %s, now())",
                (user_id(name), name, f"{name}@example.org"))
    return url


def demoted_in_ledger(url: str) -> dict[str, str]:
    return dict(execute(url, "SELECT user_id, user_name "
                        "FROM datagovuk.demoted_sysadmins"))


def test_after_migrate_promote_demoted_restores_exactly_the_demoted_set(
        migrated_site):
    demoted = demoted_in_ledger(migrated_site)
    # The old site's sysadmins but the site user (see oldsite.KNOWN_CASES).
    assert len(demoted) == len(oldsite.KNOWN_CASES.sysadmins) - 1
    assert sysadmins(migrated_site) == {SITE_USER}

    result = ckan_datagovuk(["promote", "--demoted"], db_url=migrated_site)

    assert result.returncode == 0, result.stderr
    assert sysadmins(migrated_site) == {SITE_USER, *demoted.values()}
    assert sorted(promotions(migrated_site)) == sorted(
        (id_, name, "demoted") for id_, name in demoted.items())
    assert "Sysadmins before: (none)\n" in result.stdout
    assert (f"Sysadmins after:  {', '.join(sorted(demoted.values()))}"
            in result.stdout)


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_after_migrate_promote_named_users_then_again_changes_nothing(
        migrated_site, runner):
    run = RUNNERS[runner]

    first = run(["promote", "alice", "bob"], db_url=migrated_site)

    assert first.returncode == 0, first.stderr
    assert sysadmins(migrated_site) == {SITE_USER, "alice", "bob"}
    assert promotions(migrated_site) == [(user_id("alice"), "alice", "names"),
                                         (user_id("bob"), "bob", "names")]
    assert "Sysadmins before: (none)\n" in first.stdout
    assert "Promoted:         alice, bob\n" in first.stdout
    assert "Sysadmins after:  alice, bob" in first.stdout
    # The site user is CKAN's own, not a person an operator manages.
    assert SITE_USER not in first.stdout

    state = snapshot(migrated_site)
    second = run(["promote", "alice", "bob"], db_url=migrated_site)

    assert second.returncode == 0, second.stderr
    assert snapshot(migrated_site) == state
    assert "Promoted:         (none)" in second.stdout
    assert "Already sysadmin: alice, bob" in second.stdout


def test_after_migrate_an_unknown_user_among_several_promotes_nobody(
        migrated_site):
    state = snapshot(migrated_site)

    result = ckan_datagovuk(["promote", "alice", "nosuchuser", "bob"],
                            db_url=migrated_site)

    assert "nosuchuser (no such user)" in one_line_error(result)
    assert snapshot(migrated_site) == state


@pytest.mark.parametrize("names, problem", [
    (["alice", "dave"], "dave (deleted)"),
    (["alice", "shared@example.org"],
     "shared@example.org (email of several users: erin, frank)"),
    (["alice", "visitor"], "visitor (CKAN's own pseudo user)"),
    (["alice", SITE_USER], f"{SITE_USER} (CKAN's own pseudo user)"),
])
def test_a_user_that_cannot_be_promoted_means_nobody_is(in_process, names,
                                                        problem):
    state = snapshot(in_process)

    with pytest.raises(OperatorError) as raised:
        promoting.promote(names)

    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)
    assert snapshot(in_process) == state


def test_paster_names_every_unknown_and_deleted_user(site):
    state = snapshot(site)

    result = paster_datagovuk(["promote", "ghost", "alice", "dave", "phantom"],
                              db_url=site)

    message = one_line_error(result)
    for problem in ("ghost (no such user)", "dave (deleted)",
                    "phantom (no such user)"):
        assert problem in message
    assert "alice" not in message
    assert snapshot(site) == state


def test_a_promotion_the_ledger_cannot_record_is_not_made(in_process):
    # A ledger that refuses the row: the promotion must go with it.
    execute(in_process, "CREATE TABLE datagovuk.promotions (id bigserial, "
            "user_id text, user_name text, promoted_at timestamptz, via text, "
            "approved_by text NOT NULL)")
    state = snapshot(in_process)

    with pytest.raises(OperatorError, match="nobody promoted: .*approved_by"):
        promoting.promote(["alice"])

    assert snapshot(in_process) == state
    assert "alice" not in sysadmins(in_process)


def test_users_by_id_and_by_email(in_process):
    result = promoting.promote([user_id("alice"), "BOB@example.org"])

    assert result.promoted_names == ["alice", "bob"]
    assert {"alice", "bob"} <= sysadmins(in_process)


def test_promote_without_users_or_flag_is_a_one_line_usage_error(site):
    state = snapshot(site)

    result = paster_datagovuk(["promote"], db_url=site)

    assert result.returncode == 2
    assert "--demoted" in one_line_error(result)
    assert snapshot(site) == state


def test_demoted_skips_users_deleted_since_and_reports_sysadmins(in_process):
    site = in_process
    before = sysadmins(site)

    result = promoting.promote(demoted=True)

    # heidi was deleted since; ivan is a sysadmin already.
    assert sysadmins(site) == before | {"grace", "judy"}
    assert promotions(site) == [(user_id("grace"), "grace", "demoted"),
                                (user_id("judy"), "judy", "demoted")]
    assert result.already == ["ivan"]
    assert result.skipped == ["heidi"]
    text = promoting.format_result(result)
    assert "Already sysadmin: ivan" in text
    assert "deleted since their demotion: heidi" in text


def test_demoted_a_second_time_changes_nothing(in_process):
    first = promoting.promote(demoted=True)
    state = snapshot(in_process)

    second = promoting.promote(demoted=True)

    assert first.promoted_names == ["grace", "judy"]
    assert second.promoted == []
    assert second.already == ["grace", "ivan", "judy"]
    assert snapshot(in_process) == state


def test_names_and_demoted_together_record_how_each_was_chosen(in_process):
    site = in_process
    result = promoting.promote(["alice", "grace"], demoted=True)

    assert result.promoted_names == ["alice", "grace", "judy"]
    assert promotions(site) == [(user_id("alice"), "alice", "names"),
                                (user_id("grace"), "grace", "names"),
                                (user_id("judy"), "judy", "demoted")]


def test_demoted_without_a_recorded_migration_says_so(in_process):
    execute(in_process, "DROP TABLE datagovuk.demoted_sysadmins")
    state = snapshot(in_process)

    with pytest.raises(OperatorError, match="no demotions are recorded"):
        promoting.promote(["alice"], demoted=True)

    assert snapshot(in_process) == state


def configured_ini(tmp_path, users: str) -> str:
    path = tmp_path / "configured.ini"
    path.write_text("[app:main]\n"
                    f"use = config:{TEST_INI}\n"
                    f"ckanext.datagovuk.sysadmins = {users}\n")
    return str(path)


def test_configured_promotes_the_users_of_the_setting(site, tmp_path):
    ini = configured_ini(tmp_path, "alice judy")

    result = run_command(["ckan", "-c", ini, "datagovuk", "promote",
                          "--configured"], db_url=site)

    assert result.returncode == 0, result.stderr
    assert promotions(site) == [(user_id("alice"), "alice", "configured"),
                                (user_id("judy"), "judy", "configured")]


@pytest.mark.ckan_config("ckanext.datagovuk.sysadmins", "alice nobody-here")
def test_configured_with_an_unknown_user_promotes_nobody(in_process):
    state = snapshot(in_process)

    with pytest.raises(OperatorError, match=r"nobody-here \(no such user\)"):
        promoting.promote(configured=True)

    assert snapshot(in_process) == state


@pytest.mark.ckan_config("ckanext.datagovuk.sysadmins", "")
def test_configured_with_an_empty_setting_says_so(in_process):
    with pytest.raises(OperatorError, match="lists nobody"):
        promoting.promote(configured=True)


def test_promote_refuses_a_database_not_yet_migrated(make_database,
                                                     bind_ckan_model):
    url = make_database()
    oldsite.build_schema(url, harvest=False)
    execute(url, 'INSERT INTO "user" (id, name, state, sysadmin) '
            "VALUES ('id-alice', 'alice', 'active', false)")
    state = snapshot(bind_ckan_model(url))

    with pytest.raises(OperatorError, match="legacy CKAN schema .* run "
                       "`datagovuk migrate` first"):
        promoting.promote(["alice"])

    assert snapshot(url) == state


def test_paster_with_an_unparsable_config_is_one_line(tmp_path):
    ini = tmp_path / "broken.ini"
    ini.write_text("this is not an ini file\n[app:main\n")
    env = {"CKAN_SQLALCHEMY_URL": ""}

    result = run_command(["paster", "datagovuk", "promote", "alice",
                          "-c", str(ini)], cwd="/", env=env)

    assert "cannot be read" in one_line_error(result)


@pytest.mark.parametrize("content", [
    "this is not an ini file\n[app:main\n",
    "[app:main]\nuse = egg:ckan\n",     # no SECRET_KEY: CKAN refuses it
])
def test_paster_with_a_config_ckan_cannot_load_is_one_line(tmp_path, site,
                                                           content):
    ini = tmp_path / "broken.ini"
    ini.write_text(content)

    result = run_command(["paster", "datagovuk", "promote", "alice",
                          "-c", str(ini)], db_url=site, cwd="/")

    one_line_error(result)
    assert sysadmins(site) == {"carol", "ivan", SITE_USER}
