"""Populating an old schema: the same seed gives the same site, counts
scale with the datasets, and what populate cannot fill is refused."""
from __future__ import annotations

import pytest

from ckanext.datagovuk.errors import OperatorError
from ckanext.datagovuk.testing import oldsite
from ckanext.datagovuk.tests.testing.oldsite.conftest import scalar


def populated(make_database, template, datasets, seed=1):
    url = make_database(template=template)
    counts = oldsite.populate(url, datasets=datasets, seed=seed)
    return url, counts


def test_same_seed_same_content_other_seed_other_content(
        make_database, empty_schema_template):
    first, first_counts = populated(make_database, empty_schema_template, 50, 7)
    second, second_counts = populated(make_database, empty_schema_template, 50, 7)
    other, _ = populated(make_database, empty_schema_template, 50, 8)
    assert first_counts == second_counts
    assert oldsite.content_checksum(first) == oldsite.content_checksum(second)
    assert oldsite.content_checksum(first) != oldsite.content_checksum(other)


def test_counts_scale_with_datasets(make_database, empty_schema_template):
    small = populated(make_database, empty_schema_template, 200)[1]
    large = populated(make_database, empty_schema_template, 600)[1]
    for counts, datasets in ((small, 200), (large, 600)):
        assert counts["package"] == datasets
        assert 2.5 <= counts["resource"] / datasets <= 4
        assert 8 <= counts["package_extra"] / datasets <= 16
        assert 2 <= counts["package_tag"] / datasets <= 4
        assert 1.8 <= counts["activity"] / datasets <= 2.5
        assert abs(counts["group"] - datasets / 15) <= 1
        assert abs(counts["user"] - datasets / 5) <= 2
        # history is larger than the base tables
        assert counts["package_revision"] > counts["package"]
        assert counts["revision"] > 2 * datasets
    for table in ("resource", "package_extra", "member", "activity",
                  "harvest_object", "revision"):
        assert 2.5 <= large[table] / small[table] <= 3.3, table


def test_populate_refuses_too_few_datasets(make_database, empty_schema_template):
    url = make_database(template=empty_schema_template)
    with pytest.raises(OperatorError, match="at least"):
        oldsite.populate(url, datasets=5)
    assert scalar(url, "SELECT count(*) FROM package") == 0


def test_populate_refuses_a_database_it_cannot_fill(
        make_database, empty_schema_template, old_site_template_no_harvest):
    with pytest.raises(OperatorError, match="no old"):
        oldsite.populate(make_database(), datasets=20)
    no_harvest = make_database(template=old_site_template_no_harvest)
    with pytest.raises(OperatorError, match="no harvest tables"):
        oldsite.populate(no_harvest, datasets=20)
    url = make_database(template=empty_schema_template)
    oldsite.populate(url, datasets=20)
    before = oldsite.content_checksum(url)
    with pytest.raises(OperatorError, match="already holds datasets"):
        oldsite.populate(url, datasets=20, seed=2)
    assert oldsite.content_checksum(url) == before

