"""What the generator remembers of the rows it made, for the rows that
hang off them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class User:
    id: str
    name: str
    created: dt.datetime
    publishing: bool = False


@dataclass
class Publisher:
    id: str
    name: str
    title: str
    created: dt.datetime
    local: bool  # a council, NHS body, police...: local organograms


@dataclass
class Dataset:
    id: str
    name: str
    title: str
    publisher: Publisher
    history: list      # [(revision id, timestamp, state)], oldest first
    deleted: bool
    creator_id: str


@dataclass
class Shape:
    special: Optional[str]
    harvested: Optional[str] = None   # the old harvest source type
    guid: Optional[str] = None
    organogram: Optional[str] = None  # the organogram schema id
    extras: dict = field(default_factory=dict)
