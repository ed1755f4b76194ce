"""The schema of the database against CKAN's model, as ``ckan db check``
compares them (alembic's ``compare_metadata``, CKAN's ``env.py`` filter),
but on our own connection: ``ckan db check`` opens one of its own, which
cannot see a transaction that has not committed yet."""
from __future__ import annotations

from sqlalchemy.engine import Connection


def _metadata():
    import ckan.model

    # CKAN's test fixture clean_db rebinds meta.metadata; the repository
    # keeps the model's own MetaData (as archive.known_tables).
    return ckan.model.repo.metadata


# Tables a plugin's model adds to CKAN's MetaData when its module is
# imported; they stay there after the plugin is unloaded (in one process,
# as in a test session), so they count only while the plugin is loaded.
PLUGIN_TABLES = {"tracking_raw": "tracking", "tracking_summary": "tracking",
                 "activity": "activity", "activity_detail": "activity"}


def _table_counts(name: str) -> bool:
    from ckan.plugins import plugin_loaded

    plugin = PLUGIN_TABLES.get(name)
    return plugin is None or plugin_loaded(plugin)


def _include_name(name, type_, parent_names) -> bool:
    """CKAN's env.py filter, for what the database holds: extensions'
    version tables, and the plugins' tables when their plugin is not
    loaded, are left out."""
    if type_ != "table":
        return True
    return not name.endswith("_alembic_version") and _table_counts(name)


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """The same filter for what the model holds."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or _table_counts(table.name)


def differences(connection: Connection) -> list[tuple]:
    """alembic's diff directives, flattened (one tuple per change)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"include_name": _include_name,
                          "include_object": _include_object})
    flat = []
    for diff in compare_metadata(context, _metadata()):
        flat.extend(diff if isinstance(diff, list) else [diff])
    return flat


def table_count() -> int:
    return len(_metadata().sorted_tables)
