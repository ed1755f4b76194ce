"""The datasets: a package row with its extras, tags and activities, in
the shapes the old site had (plain, harvested, organogram, special)."""
from __future__ import annotations

import json
import time
from typing import Optional

from .harvest import harvest_extras
from .known import (KNOWN, OLD_HARVEST_TYPES, ORGANOGRAM_SCHEMA_CENTRAL,
                    ORGANOGRAM_SCHEMA_LOCAL, THEME_SLUGS, special_id)
from .progress import say
from .records import Dataset, Shape
from .words import EDITED_EXTRAS, FREQUENCIES, SUBJECTS, TAGS, TITLES, slug


class Datasets:
    """Part of ``Generator``: the tags and the datasets with their extras,
    tags and activities."""

    def build_tags(self) -> None:
        count = max(len(TAGS), self.datasets // 2)
        for index in range(count):
            base = TAGS[index % len(TAGS)]
            name = base if index < len(TAGS) else f"{base}-{index}"
            tag_id = self.uuid()
            self.tag_ids[name] = tag_id
            self.load.add("tag", tag_id, name, None)
        self.tag_names = list(self.tag_ids)

    def build_datasets(self) -> None:
        known = KNOWN
        specials = {
            0: known.organogram_central_dataset,
            1: known.organogram_local_dataset,
            2: known.schema_dataset,
            3: known.resource_lists_dataset,
            4: known.null_extra_dataset,
            5: known.deleted_dataset,
            6: known.deleted_resource_dataset,
        }
        for offset, kind in enumerate(OLD_HARVEST_TYPES):
            specials[7 + offset] = known.harvested_datasets[kind]
        started = time.monotonic()
        report_every = max(self.datasets // 10, 1000)
        for index in range(self.datasets):
            self.dataset(index, specials.get(index))
            self.load.maybe_flush()
            if (index + 1) % report_every == 0:
                say(self.progress, f"datasets: {index + 1}/{self.datasets} "
                     f"({time.monotonic() - started:.1f}s)")

    def dataset(self, index: int, special: Optional[str]) -> None:
        rng = self.rng
        # Cabinet Office publishes central organograms; the last publisher
        # is always a local body.
        publisher = (self.publishers[0] if index in (0, 2)
                     else self.publishers[-1] if index == 1
                     else rng.choice(self.publishers))
        creator = rng.choice(self.users[3:])
        subject = SUBJECTS[index % len(SUBJECTS)]
        title = special.replace("-", " ").capitalize() if special \
            else f"{subject} - {publisher.title}"
        name = special or (f"{slug(subject)}-{publisher.name}"[:90]
                           + f"-{index}")
        package_id = self.uuid()
        created = self.when()
        deleted = special == KNOWN.deleted_dataset or (
            special is None and rng.random() < 0.03)
        history = self.history(created, creator.name, f"dataset {name}",
                               final_state="deleted" if deleted else "active",
                               updates=rng.choice((0, 1, 1, 2)))
        contact = self.person()
        self.versioned("package", {
            "id": package_id, "name": name, "title": title, "version": None,
            "url": f"https://www.{publisher.name}.gov.uk/data/{index}",
            "notes": f"{title}.\n\nPublished by {publisher.title}.\tUpdated "
                     "regularly.",
            "author": None, "author_email": None, "maintainer": None,
            "maintainer_email": None, "license_id": "uk-ogl",
            "type": "dataset", "owner_org": publisher.id, "private": False,
            "metadata_modified": history[-1][1],
            "creator_user_id": creator.id, "metadata_created": created},
            history)
        self.packages.append((package_id, name, created))
        self.member(publisher.id, package_id, "package", "organization",
                    history[:1])
        shape = self.dataset_shape(index, special, publisher, contact,
                                   created)
        self.dataset_rows(Dataset(package_id, name, title, publisher,
                                   history, deleted, creator.id), shape)

    def dataset_shape(self, index, special, publisher, contact, created):
        """What a dataset holds besides its package row: its extras, and
        whether it is harvested (and how) or an organogram."""
        rng = self.rng
        shape = Shape(special)
        if special in KNOWN.harvested_datasets.values():
            shape.harvested = special[len("harvested-"):-len("-record")]
        elif special is None and rng.random() < 0.3:
            shape.harvested = rng.choice(OLD_HARVEST_TYPES)
        shape.extras = self.common_extras(index, publisher, contact)
        if shape.harvested:
            shape.guid = self.uuid()
            shape.extras.update(harvest_extras(shape.guid, publisher,
                                                created))
        self.special_extras(shape, publisher)
        return shape

    def common_extras(self, index, publisher, contact) -> dict:
        rng = self.rng
        extras = {
            "theme-primary": TITLES[index % len(TITLES)],
            "theme-secondary": json.dumps(rng.sample(list(THEME_SLUGS), 2)),
            "update_frequency": rng.choice(FREQUENCIES),
            "geographic_coverage": "111100: United Kingdom (England, "
                                   "Scotland, Wales, Northern Ireland)",
            "temporal_coverage-from": str(2000 + rng.randrange(15)),
            "temporal_coverage-to": str(2015 + rng.randrange(4)),
        }
        # Optional fields, filled in as often as publishers did.
        for key, value, share in (
                ("contact-name", contact, 0.7),
                ("contact-email", f"data@{publisher.name}.gov.uk", 0.7),
                ("foi-name", "FOI team", 0.4),
                ("foi-email", f"foi@{publisher.name}.gov.uk", 0.4),
                ("mandate", "https://www.legislation.gov.uk/ukpga/2000/36", 0.3),
                ("licence", "", 0.2),
                ("core-dataset", "false", 0.2),
                ("national_statistic", "no", 0.3)):
            if rng.random() < share:
                extras[key] = value
        if rng.random() < 0.3:
            extras["unpublished"] = "false"
        return extras

    def special_extras(self, shape, publisher) -> None:
        """Organogram and schema extras, resource lists and NULL values."""
        rng, special, extras = self.rng, shape.special, shape.extras
        if special == KNOWN.organogram_central_dataset:
            shape.organogram = ORGANOGRAM_SCHEMA_CENTRAL
        elif special == KNOWN.organogram_local_dataset:
            shape.organogram = ORGANOGRAM_SCHEMA_LOCAL
        elif special is None and not shape.harvested and rng.random() < 0.03:
            shape.organogram = (ORGANOGRAM_SCHEMA_LOCAL if publisher.local
                                else ORGANOGRAM_SCHEMA_CENTRAL)
        if shape.organogram:
            extras.update({"import_source": "organograms_v2",
                           "schema": json.dumps([shape.organogram])})
        elif special == KNOWN.schema_dataset or (
                special is None and rng.random() < 0.05):
            extras["schema"] = json.dumps([special_id("spend-schema")])
        if special == KNOWN.resource_lists_dataset or (
                special is None and rng.random() < 0.05):
            for key in ("individual_resources", "additional_resources",
                        "timeseries_resources"):
                extras[key] = json.dumps([{
                    "url": f"https://www.{publisher.name}.gov.uk/{key}.csv",
                    "description": key.replace("_", " "), "format": "CSV"}])
        if special == KNOWN.null_extra_dataset:
            extras[KNOWN.null_extra_key] = None
        elif special is None and rng.random() < 0.01:
            extras["codelist"] = None

    def dataset_rows(self, dataset: "Dataset", shape: "Shape") -> None:
        """The rows hanging off a dataset: extras, tags, resources,
        activities and its harvest object."""
        first_revision = dataset.history[:1]
        # Edits of a dataset touched its coverage dates and its files; the
        # other extras keep the version they were created with.
        for key, value in shape.extras.items():
            self.versioned("package_extra", {
                "id": self.uuid(), "key": key, "value": value,
                "package_id": dataset.id},
                dataset.history if key in EDITED_EXTRAS else first_revision)
        for tag in self.rng.sample(self.tag_names, self.rng.randint(1, 5)):
            self.versioned("package_tag", {
                "id": self.uuid(), "package_id": dataset.id,
                "tag_id": self.tag_ids[tag]}, first_revision)
        self.dataset_resources(dataset, shape)
        self.dataset_activities(dataset)
        if shape.harvested and self.harvest:
            self.harvest_record(dataset, shape)

    def dataset_activities(self, dataset: "Dataset") -> None:
        data = {"package": {"id": dataset.id, "name": dataset.name,
                            "title": dataset.title}}
        first_revision, created, _state = dataset.history[0]
        self.activity(created, dataset.creator_id, dataset.id,
                      first_revision, "new package", "Package", "new", data)
        last_revision, last_moment, _state = dataset.history[-1]
        self.activity(last_moment, dataset.creator_id, dataset.id,
                      last_revision,
                      "deleted package" if dataset.deleted
                      else "changed package", "Package",
                      "deleted" if dataset.deleted else "changed", data)
