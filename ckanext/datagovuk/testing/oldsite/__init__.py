"""Build a database that looks like the old data.gov.uk's (CKAN 2.2, "2.2b").

It is the input every other command works on: the tests, the demo and the
benchmark build one with this package instead of needing a copy of the real
site.

* ``build_schema(url, version=71)``: the schema of a legacy CKAN exactly as
  CKAN's own migrations build it (alembic up to the revision of legacy
  ``version``; 71, ``c16f081ef73a``, is CKAN 2.2), with ``alembic_version``
  replaced by sqlalchemy-migrate's ``migrate_version`` = ``version`` (what a
  real dump of that CKAN holds), plus the DGU-only tables, the old
  ckanext-harvest (DGU branch) tables and those of the ``*_continuity_id``
  indexes production carried ahead of migrations 079/080 that the version
  does not create itself.  ``LEGACY_VERSIONS`` are the versions the tests
  build; any from 71 to 89 can be built.
* ``populate(url, datasets=N, seed=S)``: data in realistic proportions,
  deterministic from the seed, bulk loaded with COPY; every case the 001
  data migration treats is present at least once whatever N is (see
  ``KNOWN_CASES``).
* ``write_dump(url, path)``: a custom-format dump, as the import reads it.

    python -m ckanext.datagovuk.testing.oldsite --datasets N [--seed S] \
        [--legacy-version V] [--no-harvest] [--dump PATH] URL

Its rooms: ``known`` (the constants and ``KNOWN_CASES``), ``schema`` (with
the DDL in ``*.sql``), ``loader`` (COPY in foreign-key order), ``populate``
(``Generator``, made of ``core``, ``people``, ``publishers``, ``harvest``,
``datasets``, ``resources`` and ``others``, run in one transaction),
``words`` and ``records`` (what rows are made of), ``dump``, ``progress``
and ``cli``.  This module names what the tests, the demo and the benchmark
use.
"""
from .dump import content_checksum, write_dump
from .known import (CONTINUITY_INDEXES, DGU_TABLES, HARVEST_TABLES, KNOWN_CASES,
                    LEGACY_VERSION, LEGACY_VERSIONS, MIN_DATASETS,
                    OLD_FILES_BASE_URL, OLD_HARVEST_TYPES, ORGANOGRAM_SCHEMA_CENTRAL,
                    ORGANOGRAM_SCHEMA_LOCAL, THEME_SLUGS)
from .populate import generate, populate
from .schema import build_schema

__all__ = [
    "CONTINUITY_INDEXES", "DGU_TABLES", "HARVEST_TABLES", "KNOWN_CASES",
    "LEGACY_VERSION", "LEGACY_VERSIONS", "MIN_DATASETS", "OLD_FILES_BASE_URL",
    "OLD_HARVEST_TYPES",
    "ORGANOGRAM_SCHEMA_CENTRAL", "ORGANOGRAM_SCHEMA_LOCAL", "THEME_SLUGS",
    "build_schema", "content_checksum", "generate", "populate", "write_dump",
]
