"""What a refresh did: the CLI's ``--json`` line and the Lambda result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tmdb_async.errors import ExitCode
from tmdb_async.jobs.summary import Summary
from tmdb_async.settings import MEDIA_TYPES


@dataclass(slots=True)
class RefreshSummary:
    """What a refresh did: the CLI's ``--json`` line and the Lambda result.

    ``changed`` counts the distinct ids of the change lists (the whole-lake way: the ids
    their first pages announce), ``in_lake`` those the id map holds (the whole-lake way:
    every title it holds): what the refresh accounts for, ``records`` + ``deleted`` +
    ``still_deleted`` + ``not_found`` + ``failed`` + ``kept`` (``still_deleted``: titles TMDB
    had removed, listed again, asked once by their TMDB id and still removed). ``requests``
    are every request to TMDB, ``list_pages`` of them for the change lists.
    """

    dest: str
    date: str
    status: str = "ok"  # ok | up_to_date | failed_ids | incomplete | error
    window: dict[str, str] | None = None
    #: which way it went: ``change_lists`` (the lists read whole, the lake's titles they
    #: name fetched) or ``whole_lake`` (every title of the lake fetched, fewer than the
    #: lists' pages left after their first pages), and why; None before the first pages
    #: were read
    mode: str | None = None
    reason: str | None = None
    refreshed_through: str | None = None
    changed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in MEDIA_TYPES})
    in_lake: int = 0
    records: int = 0
    deleted: int = 0
    still_deleted: int = 0
    not_found: int = 0
    failed: int = 0
    kept: int = 0
    truncated: list[dict[str, Any]] = field(default_factory=list)
    #: change-list items without an integer TMDB id (no title to refresh): counted, so a
    #: change in TMDB's answers shows instead of passing for a quiet day
    odd_items: int = 0
    files: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    requests: int = 0
    list_pages: int = 0
    retries: int = 0
    throttled_429: int = 0
    carried: list[str] = field(default_factory=list)  # failed: asked again next refresh
    map_repaired: int = 0  # titles of the lake the id map had lost, learned again
    seconds: float = 0.0
    error: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        return {
            "ok": ExitCode.OK,
            "up_to_date": ExitCode.OK,
            "failed_ids": ExitCode.FAILED_IDS,
            "incomplete": ExitCode.INCOMPLETE,
        }.get(self.status, ExitCode.BAD_INPUT)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["exit_code"] = int(self.exit_code)
        return data

    def add(self, part: Summary) -> None:
        """Count one profile's run in."""
        for name in ("records", "deleted", "still_deleted", "not_found", "failed", "kept"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.files += part.files
        self.sidecars += part.sidecars
        if part.manifest:
            self.manifests.append(part.manifest)
        if part.status == "incomplete" or (part.status == "failed_ids" and self.status == "ok"):
            self.status = part.status
