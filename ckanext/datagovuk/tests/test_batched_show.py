"""``package_show`` with its reads batched for a chunk of datasets: the
same dicts as CKAN's own, from far fewer queries, and a dataset CKAN
cannot load fails alone (CKAN's test database, its factories and its own
``package_show``)."""
from __future__ import annotations

import contextlib

import pytest

from ckanext.datagovuk.batched_show import batched

pytestmark = pytest.mark.usefixtures("with_request_context")


def show(dataset_id: str) -> dict:
    from ckan.plugins import toolkit

    return toolkit.get_action("package_show")(
        {"ignore_auth": True, "use_cache": False}, {"id": dataset_id})


@contextlib.contextmanager
def counted_statements():
    from ckan import model
    from sqlalchemy import event

    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(model.meta.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(model.meta.engine, "before_cursor_execute", count)


@pytest.fixture
def datasets(clean_db) -> list[str]:
    """Datasets with what package_dictize reads: resources, tags, a group,
    an organization."""
    from ckan.tests import factories

    owner = factories.Organization()["id"]
    group = factories.Group()["id"]
    return [factories.Dataset(
        owner_org=owner, groups=[{"id": group}],
        tags=[{"name": f"tag-{n}"}, {"name": "shared"}],
        resources=[{"url": f"https://example.org/{n}/{r}.csv"}
                   for r in range(n % 3 + 1)])["id"] for n in range(6)]


def test_the_same_dicts_as_ckans_own_from_fewer_queries(datasets):
    with counted_statements() as plain_statements:
        plain = [show(dataset_id) for dataset_id in datasets]
    with counted_statements() as batched_statements:
        with batched(datasets) as reads_batched:
            shown = [show(dataset_id) for dataset_id in datasets]
    assert reads_batched
    assert shown == plain
    # CKAN's own: about ten queries a dataset; batched: one per kind for
    # the chunk, and what is left of CKAN's per dataset.
    assert len(batched_statements) < len(plain_statements) / 2, \
        (len(batched_statements), len(plain_statements))


def test_a_dataset_ckan_cannot_load_fails_alone(datasets):
    from ckan import model

    broken = datasets[2]
    plain = {dataset_id: show(dataset_id) for dataset_id in datasets
             if dataset_id != broken}
    # A resource's extras column is JSON CKAN reads: broken, it fails the
    # chunk's one query of resources.
    model.Session.execute(
        model.resource_table.update().where(
            model.resource_table.c["package_id"] == broken).values(
            extras="{broken"))
    model.Session.commit()
    shown, failed = {}, []
    with batched(datasets) as reads_batched:
        for dataset_id in datasets:
            try:
                shown[dataset_id] = show(dataset_id)
            except ValueError:
                failed.append(dataset_id)
    assert not reads_batched
    assert failed == [broken]
    assert shown == plain
