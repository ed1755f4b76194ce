"""``package_show`` for a chunk of datasets, its reads batched: what
``reindex`` (its indexing) and ``verify`` (its API sample) share.

Each dataset is still served by CKAN's own code (``package_dictize``, the
show schema's validation, every plugin's hooks); what changes is how the
data reaches it.  For a chunk of datasets, their packages are loaded in
one query, and each of the queries ``package_dictize`` makes per dataset
(resources, tags, groups, organization, relationships) is made once for
the chunk; ``package_dictize`` then gets each dataset's rows from those
(``BatchedReads``), and so does the show schema's check that no other
dataset has the name (``NameChecks``).  A query not recognised runs as
CKAN wrote it.

A chunk whose rows CKAN cannot load in one go (a value its column type
cannot read, such as a resource's broken ``extras`` JSON) is not batched:
each dataset reads its own, so that the one at fault fails alone, as with
CKAN's own ``package_show``.

Bottom layer: imports nothing of this package.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

# Stands in for a dataset id while the query shapes are built.
_SENTINEL = "datagovuk-batched-show-sentinel"


@contextlib.contextmanager
def replaced(module, name: str, value) -> Iterator[None]:
    """CKAN looks these functions up by name in their module at each call
    and takes none of them as an argument: point the name at ours."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _dictize_queries() -> dict[str, tuple[Callable, object]]:
    """The per-dataset queries of CKAN's ``package_dictize``, each as a
    function of its condition on the dataset (or organization) id, with
    the column that condition is on."""
    from ckan import model
    from sqlalchemy import false, select

    res, tag, pkg_tag = (model.resource_table, model.tag_table,
                         model.package_tag_table)
    member, group = model.member_table, model.group_table
    rel = model.package_relationship_table
    return {
        "resources": (lambda on: select(res).where(on), res.c["package_id"]),
        "tags": (lambda on: select(tag, pkg_tag.c["state"]).join(
            pkg_tag, tag.c["id"] == pkg_tag.c["tag_id"]).where(on),
            pkg_tag.c["package_id"]),
        "groups": (lambda on: select(group, member.c["capacity"]).join(
            member, group.c["id"] == member.c["group_id"]).where(
            on, member.c["state"] == "active",
            group.c["is_organization"] == false()), member.c["table_id"]),
        "organization": (lambda on: select(group).where(on).where(
            group.c["state"] == "active"), group.c["id"]),
        "subject": (lambda on: select(rel).where(on),
                    rel.c["subject_package_id"]),
        "object": (lambda on: select(rel).where(on),
                   rel.c["object_package_id"]),
    }


def _bound(criterion):
    """The value a ``column == value`` criterion compares with, if bound."""
    right = getattr(criterion, "right", None)
    return getattr(right, "effective_value", None)


def _signature(query) -> tuple:
    """A cheap stand-in for a statement's structure: what it selects,
    joins and filters on (the same objects each time CKAN builds it).
    Its first statement of each signature is checked by its full cache
    key; a criterion that is not ``column op value`` makes the signature
    unique, so that statement is checked on its own."""
    return (tuple(map(id, query._raw_columns)),
            tuple(id(join[0]) for join in query._setup_joins),
            tuple((id(getattr(criterion, "left", criterion)),
                   getattr(criterion, "operator", None))
                  for criterion in query._where_criteria),
            len(query._order_by_clauses), len(query._group_by_clauses),
            query._limit_clause is None, query._offset_clause is None)


_UNSEEN = object()


class BatchedReads:
    """Answers ``package_dictize``'s per-dataset queries for a chunk of
    datasets from one query per kind.  A query is recognised by its
    SQLAlchemy cache key (its structure, bound values left out), so a
    CKAN whose queries differ is simply not answered from the batch; the
    key is computed once per kind of statement (``_signature``)."""

    def __init__(self, session, packages: list):
        self.session = session
        self.rows: dict[bytes, tuple[int, dict[str, list]]] = {}
        self.verdicts: dict[tuple, tuple | None] = {}
        self.answered = self.passed = 0
        ids = [package.id for package in packages]
        orgs = sorted({p.owner_org for p in packages if p.owner_org})
        for name, (build, column) in _dictize_queries().items():
            keys = orgs if name == "organization" else ids
            self._prefetch(build, column, keys)

    def _prefetch(self, build, column, keys: list[str]) -> None:
        template = build(column == _SENTINEL)
        index = [_bound(criterion) for criterion
                 in template._where_criteria].index(_SENTINEL)
        grouped: dict[str, list] = {key: [] for key in keys}
        if keys:
            width = len(template.selected_columns)
            frozen = self.session.execute(
                build(column.in_(keys)).add_columns(column)).freeze()
            rows = frozen().columns(*range(width)).all()
            for key, row in zip(frozen().scalars(width).all(), rows):
                grouped[key].append(row)
        self.rows[template._generate_cache_key().key] = (index, grouped)

    def execute(self, query, table, context):
        """Stands in for ``model_dictize._execute``."""
        signature = _signature(query)
        known = self.verdicts.get(signature, _UNSEEN)
        if known is _UNSEEN:
            cache_key = query._generate_cache_key()
            known = self.rows.get(cache_key.key) if cache_key else None
            self.verdicts[signature] = known
        if known is not None:
            index, grouped = known
            key = _bound(query._where_criteria[index])
            if key in grouped:
                self.answered += 1
                return grouped[key]
        self.passed += 1
        return self.session.execute(query)


class NameChecks:
    """Answers the query of CKAN's ``package_name_validator`` (is the
    name taken by another dataset?) for a chunk of datasets from one
    query, through SQLAlchemy's ``do_orm_execute`` hook: the first such
    query runs, and its result, with the answer put in, serves the rest.
    A query not recognised runs as CKAN wrote it."""

    def __init__(self, session, packages: list):
        from ckan import model
        from sqlalchemy import select

        self.session = session
        table = model.package_table
        taken: dict[str, list[str]] = {}
        names = [package.name for package in packages]
        for name, dataset_id in session.execute(select(
                table.c["name"], table.c["id"]).where(
                table.c["name"].in_(names), table.c["state"] != "deleted")):
            taken.setdefault(name, []).append(dataset_id)
        self.taken = taken
        shape = self._shape()._generate_cache_key()
        values = [bind.value for bind in shape.bindparams]
        self.key = shape.key
        self.name_at = values.index(_SENTINEL)
        self.id_at = values.index(_SENTINEL + "-id")
        self.frozen = None

    def _shape(self):
        """The statement ``package_name_validator`` runs."""
        from ckan import model

        query = self.session.query(model.Package.id).filter(
            model.Package.name == _SENTINEL,
            model.Package.state != model.State.DELETED).filter(
            model.Package.id != _SENTINEL + "-id")
        return self.session.query(query.exists())._statement_20()

    def __call__(self, state):
        cache_key = state.statement._generate_cache_key()
        if cache_key is None or cache_key.key != self.key:
            return None
        binds = cache_key.bindparams
        name = binds[self.name_at].effective_value
        if name not in self.taken:
            return None
        if self.frozen is None:
            self.frozen = state.invoke_statement().freeze()
        other = any(dataset_id != binds[self.id_at].effective_value
                    for dataset_id in self.taken[name])
        return self.frozen.with_new_rows([(other,)])()

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        from sqlalchemy import event

        event.listen(self.session, "do_orm_execute", self)
        try:
            yield
        finally:
            event.remove(self.session, "do_orm_execute", self)


@contextlib.contextmanager
def batched(ids: list[str]) -> Iterator[bool]:
    """Inside the block, CKAN's ``package_show`` of any of ``ids`` reads
    from the chunk's batched queries; yields whether they are batched
    (False: the chunk's rows could not be loaded in one go).  The
    session is removed at the end, so that its identity map does not
    keep every chunk's datasets."""
    from ckan import model
    from ckan.lib.dictization import model_dictize
    from sqlalchemy.exc import SQLAlchemyError

    try:
        # Held here so that the session's identity map keeps them for
        # the chunk: CKAN's own look-ups by id then need no query.
        packages = model.Session.query(model.Package).filter(
            model.Package.id.in_(ids)).all()
        reads = BatchedReads(model.Session, packages)
        names = NameChecks(model.Session(), packages)
        patches = [replaced(model_dictize, "_execute", reads.execute),
                   names.hooked()]
    except (SQLAlchemyError, ValueError, TypeError):
        # A value a column type cannot read (ValueError: broken JSON)
        # fails the whole chunk's query; the database's own errors too.
        model.Session.remove()
        packages, patches = None, []
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield bool(patches)
    finally:
        del packages
        model.Session.remove()
