"""The Solr node behind CKAN's ``solr_url``: its CoreAdmin API (create, swap,
unload, status) and the few reads ``reindex``, ``migrate --from`` and
``status`` need (schema name, counts, stored documents).

Every failure is an ``OperatorError`` of one line: an unreachable node, or
Solr's own reason for refusing a request.
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from ckanext.datagovuk.errors import OperatorError

CONFIGSET = "ckan"
TIMEOUT = 600


@dataclass
class SolrCores:
    """The CoreAdmin API of the Solr node that serves ``solr_url``."""
    base_url: str
    live: str
    auth: tuple[str, str] | None = None

    @classmethod
    def from_solr_url(cls, solr_url: str, user: str | None = None,
                      password: str | None = None) -> "SolrCores":
        base_url, _, live = solr_url.rstrip("/").rpartition("/")
        return cls(base_url, live, (user, password) if user and password else None)

    @classmethod
    def from_config(cls, config) -> "SolrCores":
        return cls.from_solr_url(config["solr_url"], config.get("solr_user"),
                                 config.get("solr_password"))

    def core_url(self, core: str) -> str:
        return f"{self.base_url}/{core}"

    def _get(self, url: str, **params) -> dict:
        try:
            reply = requests.get(url, params={**params, "wt": "json"},
                                 auth=self.auth, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise OperatorError(f"Solr at {self.base_url} is unreachable: "
                                f"{type(error).__name__}") from None
        body = reply.json() if reply.headers.get(
            "content-type", "").startswith("application/json") else {}
        if reply.status_code != 200:
            message = body.get("error", {}).get("msg") or reply.reason
            raise OperatorError(f"Solr refused {params.get('action', url)}: "
                                f"{message.splitlines()[0]}")
        return body

    def admin(self, action: str, **params) -> dict:
        return self._get(f"{self.base_url}/admin/cores", action=action, **params)

    def cores(self) -> list[str]:
        return sorted(self.admin("STATUS", indexInfo="false")["status"])

    def exists(self, core: str) -> bool:
        status = self.admin("STATUS", core=core, indexInfo="false")["status"]
        return bool(status.get(core))

    def schema_name(self, core: str) -> str:
        return self._get(f"{self.core_url(core)}/schema/name")["name"]

    def count(self, core: str, query: str = "*:*") -> int:
        return self._get(f"{self.core_url(core)}/select", q=query,
                         rows=0)["response"]["numFound"]

    def documents(self, core: str, ids: list[str], fields: str) -> list[dict]:
        query = " OR ".join(f'"{dataset_id}"' for dataset_id in ids)
        return self._get(f"{self.core_url(core)}/select", q=f"id:({query})",
                         fl=fields, rows=len(ids))["response"]["docs"]

    def create(self, core: str, configset: str) -> None:
        self.admin("CREATE", name=core, configSet=configset)

    def swap(self, core: str, other: str) -> None:
        self.admin("SWAP", core=core, other=other)

    def unload(self, core: str) -> None:
        self.admin("UNLOAD", core=core, deleteIndex="true",
                   deleteDataDir="true", deleteInstanceDir="true")


def check_schema(cores: SolrCores, core: str) -> None:
    """Refuse a core whose schema this CKAN does not accept (CKAN itself
    checks only at start-up, and only the live core)."""
    from ckan.lib.search import SUPPORTED_SCHEMA_VERSIONS

    name = cores.schema_name(core)
    version = name.removeprefix("ckan-")
    if not name.startswith("ckan-") or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise OperatorError(f"Solr core {core} has schema {name!r}, which this "
                            "CKAN does not accept (it accepts ckan-"
                            + ", ckan-".join(SUPPORTED_SCHEMA_VERSIONS) + ")")


def site_query(site_id: str) -> str:
    """The documents of one CKAN site (several may share a core)."""
    return f'site_id:"{site_id}"'
