"""The generator's core: one seeded random stream for every id and moment,
and the row shapes every part uses (vdm-versioned rows, revisions,
activities)."""
from __future__ import annotations

import datetime as dt
import json
import random
import uuid

from .known import FAR_FUTURE
from .loader import COLUMNS, Loader
from .progress import Progress
from .records import Publisher, User
from .words import FIRST, LAST


class Core:
    """The generator's state and what every part uses: ids, moments,
    revisions, versioned rows and activities, all drawn from one seeded
    random stream."""

    def __init__(self, loader: Loader, datasets: int, seed: int,
                 harvest: bool, progress: Progress):
        self.load = loader
        self.rng = random.Random(seed)
        self.datasets = datasets
        self.harvest = harvest
        self.progress = progress
        self.start = dt.datetime(2010, 1, 4, 9, 0, 0)
        self.span_seconds = int((dt.datetime(2018, 5, 31) - self.start)
                                .total_seconds())
        self.users: list[User] = []
        self.by_name: dict[str, User] = {}
        self.publishers: list[Publisher] = []
        self.packages: list[tuple[str, str, dt.datetime]] = []  # id, name, t
        self.tag_ids: dict[str, str] = {}
        self.harvest_jobs: dict[str, list[str]] = {}  # source id -> job ids
        self.sources_by_type: dict[str, str] = {}
        self.sequence = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def when(self) -> dt.datetime:
        return self.start + dt.timedelta(
            seconds=self.rng.randrange(self.span_seconds))

    def later(self, moment: dt.datetime, max_days: int = 400) -> dt.datetime:
        return moment + dt.timedelta(seconds=self.rng.randrange(
            60, max_days * 86400))

    def revision(self, moment: dt.datetime, author: str, message: str) -> str:
        revision_id = self.uuid()
        self.load.add("revision", revision_id, moment, author, message,
                      "active", None)
        return revision_id

    def versioned(self, table: str, values: dict, history) -> None:
        """The row of a vdm-versioned table and one ``*_revision`` row per
        version: ``history`` is [(revision_id, timestamp, state)], oldest
        first; the base row is the last version."""
        columns = COLUMNS[table]
        for index, (revision_id, moment, state) in enumerate(history):
            last = index == len(history) - 1
            row = dict(values, revision_id=revision_id, state=state)
            expired = FAR_FUTURE if last else history[index + 1][1]
            self.load.add(f"{table}_revision",
                          *[row[c] for c in columns],
                          values["id"], None, moment, expired, last)
        revision_id, _, state = history[-1]
        row = dict(values, revision_id=revision_id, state=state)
        self.load.add(table, *[row[c] for c in columns])

    def history(self, created: dt.datetime, author: str, what: str,
                final_state: str = "active", updates: int = 0):
        versions = [(self.revision(created, author, f"Created {what}"),
                     created, "active" if updates or final_state == "active"
                     else final_state)]
        moment = created
        for number in range(updates):
            moment = self.later(moment, 200)
            last = number == updates - 1
            versions.append((self.revision(moment, author, f"Updated {what}"),
                             moment, final_state if last else "active"))
        return versions

    def activity(self, moment, user_id, object_id, revision_id, kind,
                 object_type, detail_kind, data) -> None:
        activity_id = self.uuid()
        payload = json.dumps(data, sort_keys=True)
        self.load.add("activity", activity_id, moment, user_id, object_id,
                      revision_id, kind, payload)
        self.load.add("activity_detail", self.uuid(), activity_id, object_id,
                      object_type, detail_kind, payload)

    def person(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"
