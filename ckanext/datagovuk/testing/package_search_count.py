"""What an anonymous ``package_search`` finds on a site, beside how many
public datasets its database has, as one JSON line::

    python -m ckanext.datagovuk.testing.package_search_count CKAN_INI

Run as its own process: CKAN's app is built from that site's config.
"""
from __future__ import annotations

import json
import sys


def counts(ini: str) -> dict[str, int]:
    from ckan import model
    from ckan.cli import load_config
    from ckan.config.middleware import make_app
    from ckan.plugins import toolkit

    app = make_app(load_config(ini))
    with app._wsgi_app.test_request_context():
        found = toolkit.get_action("package_search")({}, {"rows": 0})["count"]
        public = model.Session.query(model.Package).filter_by(
            state="active", private=False, type="dataset").count()
    return {"package_search": found, "public_datasets": public}


if __name__ == "__main__":
    print(json.dumps(counts(sys.argv[1])))
