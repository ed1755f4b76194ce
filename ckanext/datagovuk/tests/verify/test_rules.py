"""The documented rules verify expects, on single records (no database:
the rules are plain functions of a record)."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.verify import rules

CENTRAL = '["d3c0b23f-6979-45e4-88ed-d2ab59b005d0"]'
BASE = "https://bucket.example/organogram"
OLD = "https://data.gov.uk/sites/default/files/organogram/co/2017.csv"


def test_extras_mapped_by_the_data_migration():
    old = {"theme-primary": "Towns & Cities", "theme-secondary": "Health",
           "schema": CENTRAL, "individual_resources": "[]",
           "additional_resources": "[]", "timeseries_resources": "[]",
           "mandate": None, "update_frequency": "monthly"}
    assert rules.dataset_extras(old, migrated=True) == {
        "theme-primary": "towns-and-cities", "theme-secondary": "Health",
        "schema-vocabulary": CENTRAL, "mandate": "",
        "update_frequency": "monthly"}


def test_without_the_data_migration_only_the_null_fix_applies():
    old = {"theme-primary": "Society", "schema": CENTRAL, "mandate": None}
    assert rules.dataset_extras(old, migrated=False) == {
        "theme-primary": "Society", "schema": CENTRAL, "mandate": ""}


def test_an_unknown_theme_is_left_as_it_is():
    assert rules.dataset_extras({"theme-primary": "Economy & Finance"},
                                True) == {"theme-primary": "Economy & Finance"}


@pytest.mark.parametrize("url,fmt,extras,expected", [
    (OLD, "CSV", {"schema": CENTRAL}, BASE + "/organogram/co/2017.csv"),
    (OLD, None, {"schema": CENTRAL}, BASE + "/organogram/co/2017.csv"),
    (OLD[:-4] + ".xls", "XLS", {"schema": CENTRAL}, OLD[:-4] + ".xls"),
    (OLD, "CSV", {"schema": '["another-schema"]'}, OLD),
    (OLD, "CSV", {}, OLD),
    ("https://example.org/a.csv", "CSV", {"schema": CENTRAL},
     "https://example.org/a.csv"),
])
def test_organogram_csv_urls_move_to_the_configured_base(url, fmt, extras,
                                                         expected):
    assert rules.resource_url(url, fmt, extras, BASE, True) == expected
    # no base configured, or no data migration: nothing moves
    assert rules.resource_url(url, fmt, extras, None, True) == url
    assert rules.resource_url(url, fmt, extras, BASE, False) == url


def test_viewer_links_go_only_with_the_data_migration():
    assert not rules.resource_kept(viewer=True, migrated=True)
    assert rules.resource_kept(viewer=True, migrated=False)
    assert rules.resource_kept(viewer=False, migrated=True)


def user(**fields):
    return {"name": "someone", "sysadmin": False, "publisher": False,
            "spared": False, "demoted_before": False, **fields}


@pytest.mark.parametrize("fields,kept", [
    ({}, False), ({"publisher": True}, True), ({"sysadmin": True}, True),
    ({"demoted_before": True}, True), ({"name": "site"}, True)])
def test_who_is_kept(fields, kept):
    assert rules.user_kept(user(**fields), "site", True) is kept
    assert rules.user_kept(user(**fields), "site", False)


def test_sysadmins_demoted_unless_spared_or_promoted_again():
    assert not rules.user_sysadmin(user(sysadmin=True), True, False)
    assert rules.user_sysadmin(user(sysadmin=True, spared=True), True, False)
    assert rules.user_sysadmin(user(sysadmin=True), True, promoted=True)
    assert rules.user_sysadmin(user(sysadmin=True), False, False)
    assert not rules.user_sysadmin(user(), True, False)


def test_only_drupal_names_may_change_and_only_to_valid_ones():
    assert rules.user_name_ok("user_d12", "john-smith", None, True)
    assert not rules.user_name_ok("user_d12", "John Smith", None, True)
    assert not rules.user_name_ok("user_d12", "john-smith", None, False)
    assert not rules.user_name_ok("alice", "bob", None, True)
    assert not rules.user_name_ok("user_d12", "x", "user_d12", True)


@pytest.mark.parametrize("migrated", [True, False])
def test_only_the_mapped_extras_change(migrated):
    # The extras check sends only MAPPED_EXTRAS when every other key is the
    # same on both sides: mapping them alone must give what mapping the
    # whole dict gives, and every other key must stay as it was.
    import random

    keys = sorted(rules.MAPPED_EXTRAS) + ["theme-secondary", "mandate",
                                          "update_frequency"]
    values = [None, "", "[]", CENTRAL, "Health", "Towns & Cities", "x"]
    generator = random.Random(7)
    for _ in range(500):
        old = {key: generator.choice(values)
               for key in generator.sample(keys, generator.randint(0, 6))}
        mapped = {k: v for k, v in old.items() if k in rules.MAPPED_EXTRAS}
        whole = rules.dataset_extras(old, migrated)
        assert {k: v for k, v in whole.items()
                if k in rules.MAPPED_EXTRAS} == \
            rules.dataset_extras(mapped, migrated), old
        assert {k: v for k, v in whole.items()
                if k not in rules.MAPPED_EXTRAS} == rules.stored_extras(
            {k: v for k, v in old.items() if k not in rules.MAPPED_EXTRAS})


@pytest.mark.parametrize("url", [
    "https://example.org/a.csv", None, "", "ftp://x/y",
    "https://data.gov.uk/dataset/organogram.csv"])
def test_only_urls_under_the_old_file_store_change(url):
    # The resources check compares the others on the server.
    for extras in ({"schema": CENTRAL}, {}):
        assert rules.resource_url(url, "CSV", extras, BASE, True) == url
