"""What the move does to each record, by the documented rules (FACTS.md,
section 2, and the traps of CKAN's upgrade), written from the documents
and not from ``001_bytemark_to_govuk.sql``: a mistake in one is caught by
the other.

``migrated`` says whether the data migration 001 ran on the manifest's
data (not with ``--no-data-migrations``): without it only the trap fixes
apply and everything else is expected unchanged.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

DATA_MIGRATION = "001_bytemark_to_govuk.sql"
RESOURCE_LISTS = frozenset({"individual_resources", "additional_resources",
                            "timeseries_resources"})
THEME_SLUGS = {
    "Business & Economy": "business-and-economy",
    "Environment": "environment",
    "Mapping": "mapping",
    "Crime & Justice": "crime-and-justice",
    "Government": "government",
    "Society": "society",
    "Defence": "defence",
    "Government Spending": "government-spending",
    "Towns & Cities": "towns-and-cities",
    "Education": "education",
    "Health": "health",
    "Transport": "transport",
}
# The only keys whose value or presence dataset_extras() changes, NULL
# values aside: any other key is expected as it was, so the extras check
# compares those on the server and maps these alone.
MAPPED_EXTRAS = RESOURCE_LISTS | {"theme-primary", "schema",
                                  "schema-vocabulary"}
ORGANOGRAM_SCHEMAS = ("d3c0b23f-6979-45e4-88ed-d2ab59b005d0",
                      "538b857a-64ba-490e-8440-0e32094a28a7")
OLD_FILES = "https://data.gov.uk/sites/default/files/"
VIEWER = "Organogram viewer"
DRUPAL_NAME = re.compile(r"^user_d[0-9]+$")
# CKAN 2.12's user name rule (name_validator; User.VALID_NAME needs 3+).
VALID_USER_NAME = re.compile(r"^[a-z0-9_-]{2,100}$")


def stored_extras(old: Mapping[str, Any]) -> dict[str, str]:
    """Extras as CKAN 2.12 stores them: revision 106 accepts strings only,
    so the trap fix made a NULL value '' (NULL keys were dropped)."""
    return {key: "" if value is None else value for key, value in old.items()}


def dataset_extras(old: Mapping[str, Any], migrated: bool) -> dict[str, str]:
    """The extras a dataset is expected to have after the move."""
    new = {}
    for key, value in stored_extras(old).items():
        if migrated:
            if key in RESOURCE_LISTS:
                continue
            if key == "theme-primary":
                value = THEME_SLUGS.get(value, value)
            elif key == "schema":
                key = "schema-vocabulary"
        new[key] = value
    return new


def is_organogram(old_extras: Mapping[str, Any]) -> bool:
    schema = old_extras.get("schema") or old_extras.get("schema-vocabulary")
    return bool(schema) and any(uid in schema for uid in ORGANOGRAM_SCHEMAS)


def resource_url(url: Optional[str], fmt: Optional[str],
                 old_extras: Mapping[str, Any], base: Optional[str],
                 migrated: bool) -> Optional[str]:
    """An active resource's URL after the move: organogram CSVs leave the
    old Drupal file store for ``base`` (when one is configured)."""
    if not (migrated and base and url and url.startswith(OLD_FILES)):
        return url
    prefix = base.strip().rstrip("/") + "/"
    csv = (fmt or "").lower() == "csv" or url.lower().endswith(".csv")
    if url.startswith(prefix) or not csv or not is_organogram(old_extras):
        return url
    return prefix + url[len(OLD_FILES):]


def resource_kept(viewer: bool, migrated: bool) -> bool:
    """Whether an active resource stays active: not the viewer links."""
    return not (migrated and viewer)


def user_kept(user: Mapping[str, Any], site_user: Optional[str],
              migrated: bool) -> bool:
    """Users who never published are deleted; sysadmins, the site's user
    and anybody who was ever an admin or editor of a group stay."""
    if not migrated:
        return True
    return bool(user["sysadmin"] or user["publisher"]
                or user["demoted_before"] or user["name"] == site_user)


def user_sysadmin(user: Mapping[str, Any], migrated: bool,
                  promoted: bool) -> bool:
    """Every sysadmin is demoted but those spared (the configured ones and
    the site's user); promoted again only by ``datagovuk promote``."""
    if promoted:
        return True
    return bool(user["sysadmin"] and (user["spared"] or not migrated))


def user_name_ok(old: str, new: str, site_user: Optional[str],
                 migrated: bool) -> bool:
    """Names stay, but user_d<uid> names, which may take a valid name from
    the user's fullname."""
    if migrated and DRUPAL_NAME.match(old) and old != site_user:
        return new == old or bool(VALID_USER_NAME.match(new))
    return new == old
