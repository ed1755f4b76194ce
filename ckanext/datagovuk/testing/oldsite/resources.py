"""Resources: the resource group of a dataset (before legacy 074), its
files (organograms, site files, deleted ones) and their CSV previews."""
from __future__ import annotations

import json
import uuid

from .known import KNOWN, OLD_FILES_BASE_URL, SPECIAL_NAMESPACE
from .records import Dataset, Shape
from .words import FORMATS


class Resources:
    """Part of ``Generator``: resource groups, resources and their views."""

    def dataset_resources(self, dataset: "Dataset", shape: "Shape") -> None:
        first_revision = dataset.history[:1]
        publisher = dataset.publisher.name
        group_id = self.uuid()
        self.versioned("resource_group", {
            "id": group_id, "package_id": dataset.id, "label": "default",
            "sort_order": "", "extras": "{}"}, first_revision)
        files = []   # (url, format, description, state, history)
        if shape.organogram:
            date = "2017-09-30"
            files += [(f"{OLD_FILES_BASE_URL}organogram/{publisher}/{date}/"
                       f"{date}-{kind}.csv", "CSV",
                       f"Organogram ({kind} staff) {date}", "active",
                       first_revision) for kind in ("senior", "junior")]
            # An older upload that was replaced: stays deleted, untouched.
            files.append((f"{OLD_FILES_BASE_URL}organogram/{publisher}/"
                          "2016-03-31/2016-03-31-senior.csv", "CSV",
                          "Organogram (senior staff) 2016-03-31", "deleted",
                          first_revision))
            files.append((f"https://data.gov.uk/organogram/{publisher}",
                          "HTML", "Organogram viewer", "active",
                          first_revision))
        if shape.special == KNOWN.schema_dataset:
            files.append((KNOWN.non_organogram_file_url, "CSV",
                          "Spend over £25,000, September 2017", "active",
                          first_revision))
        if shape.special == KNOWN.deleted_resource_dataset:
            files.append((f"https://www.{publisher}.gov.uk/old.csv", "CSV",
                          "Superseded file", "deleted", first_revision))
        for position, (url, fmt, description, state, history) in \
                enumerate(files):
            self.resource((group_id, dataset.id), position, history, url,
                          fmt, description, state=state)
        self.generic_resources(dataset, group_id, len(files),
                               0 if shape.organogram else None)

    def generic_resources(self, dataset, group_id, position, count) -> None:
        rng = self.rng
        if count is None:
            count = rng.choice((1, 2, 2, 3, 3, 3, 4, 5))
        for _ in range(count):
            fmt, _mime = rng.choice(FORMATS)
            self.resource(
                (group_id, dataset.id), position, dataset.history,
                f"https://www.{dataset.publisher.name}.gov.uk/data/"
                f"{dataset.name}/{position}.{fmt.lower()}", fmt,
                f"{dataset.title} ({fmt})",
                state="deleted" if rng.random() < 0.03 else "active")
            position += 1

    def resource(self, parent, position, history, url, fmt, description,
                 state: str = "active") -> None:
        """A resource of ``parent`` = (resource group id, dataset id): the
        schema has one or the other (legacy 074 replaced the group)."""
        rng = self.rng
        group_id, package_id = parent
        mimetype = dict(FORMATS).get(fmt)
        created = history[0][1]
        resource_id = self.uuid()
        self.versioned("resource", {
            "id": resource_id, "url": url, "format": fmt,
            "description": description, "position": position, "hash": "",
            "resource_group_id": group_id, "package_id": package_id,
            "extras": json.dumps({"openness_score": str(rng.randint(0, 5))}),
            "name": None, "resource_type": "file" if fmt != "HTML" else None,
            "mimetype": mimetype, "mimetype_inner": None,
            "size": rng.randint(1000, 5_000_000) if fmt != "HTML" else None,
            "last_modified": None, "cache_url": None,
            "cache_last_updated": None, "webstore_url": None,
            "webstore_last_updated": None, "created": created,
            "url_type": None}, history[:-1] + [(history[-1][0], history[-1][1],
                                                state)])
        if fmt == "CSV":
            # From legacy 072 on, CKAN gave a CSV file a preview; its id
            # comes from the resource's, so the random stream is the same
            # at every version.
            self.load.add("resource_view",
                          str(uuid.uuid5(SPECIAL_NAMESPACE, resource_id)),
                          resource_id, "Data Explorer", "", "recline_view",
                          0, None)

    def orphan_resource_group(self) -> None:
        """A resource group with no dataset: only the schema before legacy
        074 can hold one (after it a resource names its dataset)."""
        if not self.load.has("resource_group"):
            return
        history = self.history(self.when(), "dgu_support", "resource group")
        self.versioned("resource_group", {
            "id": KNOWN.orphan_resource_group_id, "package_id": None,
            "label": "default", "sort_order": "", "extras": "{}"}, history)
        for position in range(2):
            self.resource((KNOWN.orphan_resource_group_id, None), position,
                          history,
                          f"https://www.example.gov.uk/lost/{position}.csv",
                          "CSV", "File of a dataset that was purged")
