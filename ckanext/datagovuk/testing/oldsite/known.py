"""What every generated site holds whatever its size and seed: the legacy
versions, the old site's constants and ``KNOWN_CASES``, the special rows
the tests look for."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from ckanext.datagovuk import alembic_runner

MIN_DATASETS = 20
LEGACY_VERSION = alembic_runner.CKAN_22_LEGACY_VERSION
# The legacy versions the tests build: CKAN 2.2 (71) and later ones that
# changed the schema the generator fills (72 resource views, 74 no resource
# groups, 78 no old authorization tables, 83 no related items, 84
# package.metadata_created, 86 no user.openid).
LEGACY_VERSIONS = (71, 72, 73, 74, 79, 82, 86)
# sqlalchemy-migrate's repository id for CKAN (ckan/migration/migrate.cfg)
# and where the old site had CKAN installed.
MIGRATE_REPOSITORY_ID = "Ckan"
MIGRATE_REPOSITORY_PATH = "/usr/lib/ckan/dgu/src/ckan/ckan/migration"

# The indexes production carried ahead of CKAN's 079/080 (which create them
# again, failing with DuplicateTable): index name -> revision table.
CONTINUITY_INDEXES = {
    "idx_resource_continuity_id": "resource_revision",
    "idx_member_continuity_id": "member_revision",
    "idx_package_continuity_id": "package_revision",
    "idx_package_extra_continuity_id": "package_extra_revision",
    "idx_package_tag_continuity_id": "package_tag_revision",
}
DGU_TABLES = ("data_cache", "publisher_request", "schema", "codelist",
              "commitment")
HARVEST_TABLES = ("harvest_source", "harvest_job", "harvest_object",
                  "harvest_object_extra", "harvest_object_error",
                  "harvest_gather_error", "harvest_coupled_resource")

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
ORGANOGRAM_SCHEMA_CENTRAL = "d3c0b23f-6979-45e4-88ed-d2ab59b005d0"
ORGANOGRAM_SCHEMA_LOCAL = "538b857a-64ba-490e-8440-0e32094a28a7"
OLD_FILES_BASE_URL = "https://data.gov.uk/sites/default/files/"
OLD_HARVEST_TYPES = ("gemini-single", "gemini-csw", "gemini-waf",
                     "data_json", "dkan", "ckan")
DUPLICATE_HARVEST_SOURCE_ID = "2c798023-abac-4785-ad19-67bd5c1aed63"
# vdm's expired_timestamp for the current version of a row.
FAR_FUTURE = dt.datetime(9999, 12, 31)

SPECIAL_NAMESPACE = uuid.UUID("0b1d5173-7e2b-4a51-9d3e-6f1b0c2d4e5a")


def special_id(name: str) -> str:
    """The fixed id of a special row: the same for every seed and scale."""
    return str(uuid.uuid5(SPECIAL_NAMESPACE, name))


@dataclass(frozen=True)
class KnownCases:
    """The special rows every generated site holds (names are fixed; ids of
    the rows below are ``special_id(<what>)`` where stated)."""
    site_user: str = "test.ckan.net"  # ckan.site_id of test.ini; sysadmin
    pseudo_users: tuple = ("logged_in", "visitor")
    sysadmins_with_membership: tuple = ("dgu_support",)
    sysadmins_without_membership: tuple = ("harvest", "user_d101",
                                           "test.ckan.net")
    # user_d users who are editors of the first publisher (so they stay).
    same_fullname: str = "John Smith"
    same_fullname_users: tuple = ("user_d2001", "user_d2002")
    # fullnames that are not valid CKAN user names (None = NULL).
    invalid_fullnames: dict = field(default_factory=lambda: {
        "user_d2003": "Mary O'Brien-Smith",
        "user_d2004": "José Núñez",
        "user_d2005": "J",
        "user_d2006": "",
        "user_d2007": None,
        "user_d2008": "Ann   LEE",
        "user_d2009": "Harvest",  # derives to an existing user's name
        "user_d2010": "A.N. Other!!",
        "user_d2011": "Bartholomew " * 10,  # longer than 100 characters
    })
    # a non-publishing user_d user (deleted by 001).
    non_publishing_user_d: str = "user_d2012"
    publishing_admin: str = "user_d3101"
    publishing_editor: str = "user_d3102"
    deleted_membership_only: str = "user_d3103"   # editor, membership deleted
    active_and_deleted_memberships: str = "user_d3104"
    # non-publishing users with ratings, followers, dashboard, old auth rows
    non_publishing_with_history: tuple = ("user_d4001", "user_d4002")
    # emails equal but for case: (non-publishing, publishing) and two
    # active publishing users.
    email_case_clash_deleted_vs_kept: tuple = ("user_d3001", "user_d3002")
    email_case_clash_kept_pair: tuple = ("user_d3003", "user_d3004")
    # datasets
    organogram_central_dataset: str = "organogram-senior-staff-cabinet-office"
    organogram_local_dataset: str = "organogram-staff-local-authority"
    schema_dataset: str = "spend-over-25k-with-schema"
    resource_lists_dataset: str = "dataset-with-resource-lists"
    null_extra_dataset: str = "dataset-with-null-extra"
    null_extra_key: str = "mandate"
    deleted_dataset: str = "deleted-dataset-example"
    deleted_resource_dataset: str = "dataset-with-deleted-resource"
    unmapped_theme: str = "Economy & Finance"
    harvested_datasets: dict = field(default_factory=lambda: {
        kind: f"harvested-{kind}-record" for kind in OLD_HARVEST_TYPES})
    # a site file that is not an organogram (must keep its URL)
    non_organogram_file_url: str = (OLD_FILES_BASE_URL
                                    + "spend/cabinet-office-spend-2017-09.csv")
    # publishers
    null_extra_publisher: str = "cabinet-office"
    null_extra_publisher_key: str = "foi-phone"
    # resource_group whose dataset is gone: resource_group.package_id is
    # NULL (the foreign key to package forbids a dangling id); it has
    # resources, and all of them have resource_revision rows.
    orphan_resource_group_id: str = special_id("orphan-resource-group")
    duplicate_harvest_source_id: str = DUPLICATE_HARVEST_SOURCE_ID
    harvest_source_types: tuple = OLD_HARVEST_TYPES
    dkan_source_url: str = "https://data.anytown.gov.uk"

    @property
    def sysadmins(self) -> tuple:
        return self.sysadmins_with_membership + self.sysadmins_without_membership


KNOWN_CASES = KNOWN = KnownCases()
