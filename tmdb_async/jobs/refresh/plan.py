"""The plan of one refresh (one processing date), kept in the lake until it is done.

``Raw/TMDB/_state/refresh/<date>.json``: the window, the change-list pieces read and the
lake's titles they named, the pages of pieces read in part, then the groups to fetch (one
per profile the titles were ingested with). A refresh of the same date cut off (deadline,
kill, Lambda retry) continues it: pieces read are not read again.

Its JSON form is the one plans already saved in lakes have: a plan saved by any earlier
version loads (fields added since are optional), and saving what was loaded writes the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tmdb_async.jobs.refresh.window import DAY, Window
from tmdb_async.lake.idmap import LakeIdMap
from tmdb_async.lake.layout import STATE_FOLDER
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import Store
from tmdb_async.settings import MEDIA_TYPES, MediaType, Settings

log = logging.getLogger(__name__)

PLAN_FOLDER: Final = f"{STATE_FOLDER}/refresh"

WHOLE_LAKE: Final = "whole_lake"
"""A refresh that fetches every title of the lake directly: fewer than its lists' pages."""
CHANGE_LISTS: Final = "change_lists"
"""A refresh that reads the change lists whole and fetches the lake's titles they name."""

Piece = tuple[str, str, str]
"""A change-list request read whole: (kind, start, end), days in ISO form."""


@dataclass(frozen=True, slots=True)
class Group:
    """Titles fetched alike: with the :class:`Profile` they were ingested with, or, ingested
    before profiles were kept, as their ``media_type`` with this refresh's own settings."""

    profile: Profile | None
    media_type: MediaType | None
    ids: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": None if self.profile is None else self.profile.as_json(),
            "media_type": self.media_type,
            "ids": list(self.ids),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Group:
        """A saved group, checked: a profile that parses, or a kind; ids as strings."""
        profile = data["profile"]
        media_type = data["media_type"]
        if media_type is not None and media_type not in MEDIA_TYPES:
            raise ValueError(f"a group of kind {str(media_type)[:20]!r}")
        if profile is None and media_type is None:
            raise ValueError("a group with neither profile nor kind")
        return cls(
            None if profile is None else Profile.from_json(profile),
            media_type,
            tuple(str(i) for i in data["ids"]),
        )

    def settings(self, base: Settings) -> Settings:
        """``base`` (the refresh's settings) as these titles were ingested."""
        if self.profile is None:  # ingested before profiles were kept: this refresh's own
            return base.with_changes(kind=self.media_type, detail="full")
        profile = self.profile
        return base.with_changes(
            kind=profile.kind,
            detail=profile.detail,
            language=profile.language,
            append_to_response=profile.append_to_response,
            output_format=profile.output_format,
        )


@dataclass(frozen=True, slots=True)
class PagesRead:
    """A change-list request window read in part: its page count, the pages read."""

    total: int
    read: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "read": list(self.read)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PagesRead:
        return cls(int(data["total"]), tuple(int(p) for p in data["read"]))


@dataclass(slots=True)
class Plan:
    """A refresh of one processing date, saved in the lake as it goes (see the module)."""

    date: dt.date
    window: Window
    carried: list[str] = field(default_factory=list)  # failed last time: asked again
    done: list[Piece] = field(default_factory=list)  # pieces read whole
    selected: list[str] = field(default_factory=list)  # IMDb ids of the lake, once each
    changed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in MEDIA_TYPES})
    truncated: list[dict[str, Any]] = field(default_factory=list)
    groups: list[Group] | None = None  # None: the lists are not read whole yet
    odd_items: int = 0  # change-list items without an integer id, in the pieces read
    # Pieces read in part, by request window ("kind/start/end")
    pages: dict[str, PagesRead] = field(default_factory=dict)
    # Which way it goes (:data:`WHOLE_LAKE` or :data:`CHANGE_LISTS`), decided once the
    # first pages told the lists' size, and why; None: not decided yet (or saved before)
    mode: str | None = None
    reason: str | None = None

    @staticmethod
    def key(date: dt.date) -> str:
        return f"{PLAN_FOLDER}/{date.isoformat()}.json"

    @property
    def titles(self) -> Iterator[str]:
        """The IMDb ids of every group, once the lists are read whole."""
        return (imdb_id for group in self.groups or [] for imdb_id in group.ids)

    @classmethod
    async def load(cls, store: Store, date: dt.date) -> Plan | None:
        """The saved plan of ``date``; None when there is none, or it is damaged (the
        refresh then starts it again)."""
        raw = await store.get(cls.key(date))
        if raw is None:
            return None
        try:
            return cls.from_json(date, json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s: damaged refresh plan, starting it again", store.url(cls.key(date)))
            return None

    @classmethod
    def from_json(cls, date: dt.date, body: Mapping[str, Any]) -> Plan:
        window = body["window"]
        groups = body["groups"]
        plan = cls(
            date,
            Window(dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"])),
            [str(i) for i in body["carried"]],
            [(str(kind), str(start), str(end)) for kind, start, end in body["done"]],
            [str(i) for i in body["selected"]],
            {str(k): int(v) for k, v in body["changed"].items()},
            [dict(cut) for cut in body["truncated"]],
            None if groups is None else [Group.from_json(g) for g in groups],
            int(body.get("odd_items", 0)),  # absent from plans saved before it existed
            {str(key): PagesRead.from_json(part) for key, part in body.get("pages", {}).items()},
            _mode(body.get("mode")),
            None if body.get("reason") is None else str(body["reason"]),
        )
        if plan.window.end != date - DAY or plan.window.days < 1:
            raise ValueError("its window does not end the day before its date")
        return plan

    def as_json(self) -> dict[str, Any]:
        decided = {} if self.mode is None else {"mode": self.mode, "reason": self.reason}
        return {
            "date": self.date.isoformat(),
            "window": self.window.as_json(),
            "carried": self.carried,
            "done": [list(piece) for piece in self.done],
            "selected": self.selected,
            "changed": self.changed,
            "truncated": self.truncated,
            "groups": None if self.groups is None else [g.as_json() for g in self.groups],
            "odd_items": self.odd_items,
            "pages": {key: part.as_json() for key, part in self.pages.items()},
            **decided,  # absent until decided: a plan saved before saves the same bytes
        }

    async def save(self, store: Store) -> None:
        body = json.dumps(self.as_json()).encode()
        await store.put(self.key(self.date), body, "application/json")

    def pieces(self) -> Iterator[tuple[MediaType, Window]]:
        """The change-list requests still to read: per kind, the window in 14-day pieces."""
        for kind in MEDIA_TYPES:
            for piece in self.window.pieces():
                if (kind, piece.start.isoformat(), piece.end.isoformat()) not in self.done:
                    yield kind, piece

    def group(self, idmap: LakeIdMap) -> None:
        """The titles to fetch, by the profile they were ingested with."""
        groups: dict[tuple[str, str | None], tuple[Profile | None, MediaType | None]] = {}
        ids: dict[tuple[str, str | None], list[str]] = {}
        for imdb_id in dict.fromkeys([*self.selected, *self.carried]):
            title = idmap.get(imdb_id)
            if title is None:
                continue  # forgotten since (TMDB no longer honoured its entry)
            profile = title.profile
            if profile is None:  # by media type: each kind is fetched as such
                key: tuple[str, str | None] = ("", title.media_type)
                groups.setdefault(key, (None, title.media_type))
            else:
                key = (json.dumps(profile.as_json(), sort_keys=True), None)
                groups.setdefault(key, (profile, None))
            ids.setdefault(key, []).append(imdb_id)
        self.groups = [Group(*how, tuple(ids[key])) for key, how in groups.items()]


def _mode(value: object) -> str | None:
    """A saved plan's mode: one of the two ways, or None (not decided)."""
    if value is None:
        return None
    if value in (WHOLE_LAKE, CHANGE_LISTS):
        return str(value)
    raise ValueError(f"a plan of mode {str(value)[:20]!r}")
