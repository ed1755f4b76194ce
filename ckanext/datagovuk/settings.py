"""The extension's settings, read with their declared defaults.

CKAN applies a plugin's config declarations only when the plugin is in
``ckan.plugins``, and operators run our commands with the plugin disabled
(CKAN's advice during a schema upgrade), so the declarations are read from
``config_declaration.yaml`` here and applied to whatever the config holds.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import yaml
from ckan.common import config
from ckan.config.declaration import Declaration, Key

DECLARATION_FILE = os.path.join(os.path.dirname(__file__),
                                "config_declaration.yaml")
KEEP_SYSADMINS = "ckanext.datagovuk.keep_sysadmins"
ORGANOGRAM_BASE_URL = "ckanext.datagovuk.organogram_base_url"
SYSADMINS = "ckanext.datagovuk.sysadmins"


@lru_cache(maxsize=None)
def declaration() -> Declaration:
    with open(DECLARATION_FILE) as handle:
        data = yaml.safe_load(handle)
    declared = Declaration()
    declared.load_dict(data)
    return declared


def get(name: str, source: Any = None) -> Any:
    """The value of setting ``name`` in ``source`` (CKAN's config by default),
    normalised by its declared type, or its declared default."""
    option = declaration()[Key.from_string(name)]
    source = config if source is None else source
    return option.normalize(source.get(name, option.default))
