"""The old harvest: sources (one registered twice), jobs, objects and
their errors, and the extras of a harvested record."""
from __future__ import annotations

import datetime as dt
import json

from .known import DUPLICATE_HARVEST_SOURCE_ID, KNOWN, OLD_HARVEST_TYPES
from .records import Dataset, Publisher, Shape


def harvest_extras(guid: str, publisher: Publisher,
                    created: dt.datetime) -> dict:
    """The extras of a harvested (UKLP/INSPIRE) record."""
    return {
        "UKLP": "True", "guid": guid,
        "spatial": '{"type": "Polygon", "coordinates": [[[-6.4, '
                   '49.8], [1.8, 49.8], [1.8, 60.9], [-6.4, 60.9], '
                   '[-6.4, 49.8]]]}',
        "bbox-north-lat": "60.9", "bbox-south-lat": "49.8",
        "bbox-east-long": "1.8", "bbox-west-long": "-6.4",
        "metadata-date": created.date().isoformat(),
        "responsible-party": f"{publisher.title} (pointOfContact)",
        "import_source": "harvest",
    }


class Harvest:
    """Part of ``Generator``: the old harvest sources, jobs and objects."""

    def build_harvest_sources(self) -> None:
        harvest_user = self.by_name["harvest"]
        count = max(len(OLD_HARVEST_TYPES), self.datasets // 400)
        sources = []
        for index in range(count):
            kind = OLD_HARVEST_TYPES[index % len(OLD_HARVEST_TYPES)]
            publisher = self.publishers[(index * 7 + 3) % len(self.publishers)]
            url = {
                "gemini-single": f"https://{publisher.name}.gov.uk/metadata/record-{index}.xml",
                "gemini-csw": f"https://csw.{publisher.name}.gov.uk/geonetwork/srv/en/csw",
                "gemini-waf": f"https://{publisher.name}.gov.uk/inspire/waf/",
                "data_json": f"https://{publisher.name}.gov.uk/data.json",
                "dkan": (KNOWN.dkan_source_url if index == OLD_HARVEST_TYPES.index("dkan")
                         else f"https://data.{publisher.name}.gov.uk"),
                "ckan": f"https://ckan.{publisher.name}.gov.uk",
            }[kind]
            sources.append((self.uuid(), f"{publisher.name}-{kind}-{index}",
                            url, kind, publisher))
        # The duplicate: a second registration of the first WAF source.
        waf = sources[OLD_HARVEST_TYPES.index("gemini-waf")]
        sources.append((DUPLICATE_HARVEST_SOURCE_ID, f"{waf[1]}-duplicate",
                        waf[2], "gemini-waf", waf[4]))
        for source_id, name, url, kind, publisher in sources:
            created = self.when()
            self.load.add("harvest_source", source_id, name, url,
                          f"{publisher.title} ({kind})",
                          f"Harvests {kind} records of {publisher.title}.",
                          json.dumps({"default_extras": {"harvest": "yes"}})
                          if kind == "ckan" else "", created, kind,
                          self.rng.random() < 0.9, harvest_user.id,
                          publisher.id,
                          self.rng.choice(("MANUAL", "WEEKLY", "DAILY")),
                          self.later(created, 30))
            self.sources_by_type.setdefault(kind, source_id)
            jobs = []
            moment = created
            for number in range(self.rng.randint(1, 3)):
                moment = self.later(moment, 60)
                job_id = self.uuid()
                jobs.append(job_id)
                self.load.add("harvest_job", job_id, moment, moment,
                              moment + dt.timedelta(minutes=3),
                              moment + dt.timedelta(minutes=20), source_id,
                              "Finished")
                if number == 0 or self.rng.random() < 0.2:
                    self.load.add("harvest_gather_error", self.uuid(), job_id,
                                  f"Unable to get content for URL: {url}: "
                                  "HTTP Error 503", moment)
            self.harvest_jobs[source_id] = jobs
        self.load.maybe_flush()

    def harvest_object(self, source_id: str, package_id, guid: str,
                       moment: dt.datetime, current: bool) -> None:
        object_id = self.uuid()
        self.load.add("harvest_object", object_id, guid, current, moment,
                      moment, f"<gmd:MD_Metadata><gmd:fileIdentifier>{guid}"
                      "</gmd:fileIdentifier></gmd:MD_Metadata>",
                      moment, moment, moment,
                      "COMPLETE" if current else "ERROR", moment, 0,
                      self.rng.choice(self.harvest_jobs[source_id]),
                      source_id, package_id, "added" if current else "errored")
        self.load.add("harvest_object_extra", self.uuid(), object_id,
                      "status", "new" if current else "change")
        if not current or self.rng.random() < 0.1:
            self.load.add("harvest_object_error", self.uuid(), object_id,
                          "Validation error: gmd:MD_Metadata missing "
                          "gmd:dateStamp", "Import", self.rng.randint(1, 400),
                          moment)
        return object_id

    def harvest_record(self, dataset: "Dataset", shape: "Shape") -> None:
        created = dataset.history[0][1]
        source_id = self.sources_by_type[shape.harvested]
        object_id = self.harvest_object(source_id, dataset.id, shape.guid,
                                        created, True)
        self.versioned("package_extra", {
            "id": self.uuid(), "key": "harvest_object_id",
            "value": object_id, "package_id": dataset.id},
            dataset.history[:1])
        if shape.harvested == "gemini-waf" and (
                shape.special or self.rng.random() < 0.5):
            self.harvest_object(DUPLICATE_HARVEST_SOURCE_ID, dataset.id,
                                shape.guid, self.later(created, 10), False)
