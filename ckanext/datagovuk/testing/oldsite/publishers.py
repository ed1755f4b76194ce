"""The publishers: organizations with their DGU extras, mostly below an
earlier one."""
from __future__ import annotations

from .known import KNOWN
from .records import Publisher
from .words import BODIES, CATEGORIES, DEPARTMENTS, PLACES, slug


class Publishers:
    """Part of ``Generator``: the publishers (organizations), their extras
    and hierarchy."""

    def build_publishers(self) -> None:
        count = max(self.datasets // 15, 8)
        support = self.by_name["dgu_support"]
        # A few departments at the top; the other publishers mostly hang
        # below an earlier one.
        top = min(len(DEPARTMENTS), max(2, count // 5))
        titles = []
        for index in range(count):
            if index < top:
                titles.append((DEPARTMENTS[index], "ministerial-department"))
            else:
                place = PLACES[index % len(PLACES)]
                body = BODIES[(index // len(PLACES)) % len(BODIES)]
                suffix = index // (len(PLACES) * len(BODIES))
                title = f"{place} {body}" + (f" {suffix + 1}" if suffix else "")
                titles.append((title, self.rng.choice(CATEGORIES[1:])))
        for index, (title, category) in enumerate(titles):
            name = slug(title)
            created = self.when()
            publisher = Publisher(self.uuid(), name, title, created,
                                   local=index >= top)
            self.publishers.append(publisher)
            closed = self.rng.random() < 0.05
            history = self.history(created, support.name,
                                   f"publisher {name}",
                                   updates=self.rng.randint(0, 2))
            self.versioned("group", {
                "id": publisher.id, "name": name, "title": title,
                "description": f"{title} publishes data on data.gov.uk.",
                "created": created, "type": "organization",
                "approval_status": "approved", "image_url": None,
                "is_organization": True}, history)
            contact = self.person()
            extras = {
                "contact-name": contact,
                "contact-email": f"data@{name}.gov.uk",
                "contact-phone": f"020 7{self.rng.randint(100, 999)} "
                                 f"{self.rng.randint(1000, 9999)}",
                "foi-name": "FOI team",
                "foi-email": f"foi@{name}.gov.uk",
                "foi-phone": f"0300 {self.rng.randint(100, 999)} "
                             f"{self.rng.randint(1000, 9999)}",
                "foi-web": f"https://www.{name}.gov.uk/foi",
                "category": category,
                "abbreviation": "".join(w[0] for w in title.split()
                                        if w[0].isupper()),
                "closed": "true" if closed else "false",
            }
            if closed and index:
                extras["replaced_by"] = self.publishers[
                    self.rng.randrange(index)].name
            if name == KNOWN.null_extra_publisher:
                extras[KNOWN.null_extra_publisher_key] = None
            for key, value in extras.items():
                self.versioned("group_extra", {
                    "id": self.uuid(), "group_id": publisher.id, "key": key,
                    "value": value}, history[:1])
            if index == top or (index > top and self.rng.random() < 0.8):
                parent = self.publishers[self.rng.randrange(
                    min(index, top + index // 3))]
                self.member(publisher.id, parent.id, "group", "parent",
                            history[:1])
            self.activity(created, support.id, publisher.id, history[0][0],
                          "new organization", "Group", "new",
                          {"group": {"id": publisher.id, "name": name,
                                     "title": title}})
        self.load.maybe_flush()
