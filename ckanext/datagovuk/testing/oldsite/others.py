"""The tables that hang off no one part: related items, system info,
relationships, QA and tracking rows, the DGU tables, coupled resources."""
from __future__ import annotations

from .known import (OLD_HARVEST_TYPES, ORGANOGRAM_SCHEMA_CENTRAL,
                    ORGANOGRAM_SCHEMA_LOCAL, special_id)


class Others:
    """Part of ``Generator``: the other tables (related items, system info,
    relationships, QA, tracking, DGU tables, coupled resources)."""

    def build_misc(self) -> None:
        rng = self.rng
        packages = self.packages
        # related items (apps/ideas)
        for number in range(max(2, len(packages) // 200)):
            related_id = self.uuid()
            package_id, _name, moment = rng.choice(packages)
            self.load.add("related", related_id, "application",
                          f"App number {number}", "Uses open data.", None,
                          f"https://apps.example.org/{number}",
                          self.later(moment), rng.choice(self.users[3:]).id,
                          rng.randint(0, 500), 0)
            self.load.add("related_dataset", self.uuid(), package_id,
                          related_id, "active")
        for index, (key, value) in enumerate((
                ("ckan.site_title", "data.gov.uk"),
                ("ckan.site_description", "Opening up government"),
                ("ckan.main_css", "/base/css/main.css")), start=1):
            revision_id = self.revision(self.start, "dgu_support",
                                        f"system setting {key}")
            self.load.add("system_info", index, key, value, revision_id)
        package_extra_relation = rng.sample(packages, min(3, len(packages)))
        if len(package_extra_relation) >= 2:
            subject, obj = package_extra_relation[0], package_extra_relation[1]
            history = self.history(subject[2], "dgu_support", "relationship")
            self.versioned("package_relationship", {
                "id": self.uuid(), "subject_package_id": subject[0],
                "object_package_id": obj[0], "type": "child_of",
                "comment": ""}, history)
        for package_id, name, moment in rng.sample(
                packages, max(1, len(packages) // 10)):
            self.load.add("task_status", self.uuid(), package_id, "package",
                          "qa", "status", "ok", "done", None,
                          self.later(moment))
            self.load.add("tracking_summary",
                          f"/dataset/{name}", package_id, "page",
                          rng.randint(1, 100), rng.randint(100, 9000),
                          rng.randint(0, 100), self.later(moment).date())
            self.load.add("data_cache", self.uuid(), package_id,
                          "openness_score", str(rng.randint(0, 5)),
                          self.later(moment))
        for schema_id, url, title in (
                (ORGANOGRAM_SCHEMA_CENTRAL,
                 "https://github.com/datagovuk/schemas/tree/master/organogram",
                 "Organisation structure including senior roles & junior "
                 "staff numbers (central government)"),
                (ORGANOGRAM_SCHEMA_LOCAL,
                 "https://github.com/datagovuk/schemas/tree/master/organogram",
                 "Organisation structure including senior roles & junior "
                 "staff numbers (local authority)"),
                (special_id("spend-schema"),
                 "https://github.com/datagovuk/schemas/tree/master/spend",
                 "Spend over £25,000 in local government")):
            self.load.add("schema", schema_id, url, title)
        for number in range(3):
            self.load.add("codelist", self.uuid(),
                          f"https://example.org/codelist/{number}",
                          f"Code list {number}")
        for package_id, name, moment in rng.sample(
                packages, max(1, len(packages) // 100)):
            self.load.add("commitment", self.uuid(), "PM letter",
                          f"Publish {name}", "", f"https://data.gov.uk/dataset/{name}",
                          rng.choice(self.publishers).name, "dgu_support",
                          name, self.later(moment), "active")
        self.orphan_resource_group()
        if self.harvest:
            harvested = [p for p in packages[7:7 + len(OLD_HARVEST_TYPES)]]
            for service, dataset in zip(harvested, harvested[1:]):
                self.load.add("harvest_coupled_resource", self.uuid(),
                              service[0], f"https://{service[1]}.gov.uk/"
                              f"csw?id={dataset[1]}", dataset[0])
        self.load.flush()
