"""The staging database's names and the extension packages it asks for."""
from __future__ import annotations

from ckanext.datagovuk.transfer import staging


def test_extension_packages():
    assert staging.extension_package("postgis", 15) == \
        "postgresql-15-postgis-3"
    assert staging.extension_package("pgrouting", 15) == \
        "postgresql-15-pgrouting"


def test_staging_and_backup_names_fit_postgresql_limits():
    long = "x" * 63
    assert len(staging.staging_name(long, 4194304).encode()) <= 63
    assert staging.staging_name("ckan", 12).endswith("ckan__import_12")
    assert staging.backup_name("ckan", 0) == "ckan__before_import_19700101000000"
