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


def _include_name(name, type_, parent_names) -> bool:
    """CKAN's env.py filter: extensions' version tables, and the tracking
    and activity tables when their plugin is not loaded, are left out."""
    from ckan.plugins import plugin_loaded

    if type_ != "table":
        return True
    if name.endswith("_alembic_version"):
        return False
    if name in ("tracking_raw", "tracking_summary"):
        return plugin_loaded("tracking")
    if name in ("activity", "activity_detail"):
        return plugin_loaded("activity")
    return True


def differences(connection: Connection) -> list[tuple]:
    """alembic's diff directives, flattened (one tuple per change)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"include_name": _include_name})
    flat = []
    for diff in compare_metadata(context, _metadata()):
        flat.extend(diff if isinstance(diff, list) else [diff])
    return flat


def table_count() -> int:
    return len(_metadata().sorted_tables)
