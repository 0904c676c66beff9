"""What a run did: the :class:`Summary` (CLI ``--json`` line, Lambda result) and its manifest.

A manifest is written when a run starts (which proves the destination is writable before any
TMDB quota is spent) and again when it ends, under ``<date folder>/_manifests/``. It holds
the public settings, counts, files and outcome; never the secret: error texts go through
:mod:`tmdb_async.redaction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tmdb_async.errors import ExitCode


@dataclass(slots=True)
class Summary:
    """What a run did. ``as_dict()`` is the CLI's ``--json`` line and the Lambda result.

    Every distinct id of the slice is counted once: ``records``, ``not_found``, ``invalid``,
    ``failed`` and ``deleted`` (a refresh's titles whose details TMDB now answers with 404)
    are what this run wrote; ``still_deleted`` (a refresh's titles TMDB had removed, listed
    again and still removed) wrote nothing, their ``deleted`` entries stand; ``kept`` were
    already in the date folder from an earlier run with the same record settings;
    ``skipped`` (incremental runs) have a record in another date folder. ``replaced`` of
    the written ids moved out of an older file.
    ``rewritten`` ids (``--replace`` with another ``--format``) moved from the folder's
    files of the other format into files of this one, re-encoded, without a request.
    ``held`` of the ``failed`` ids kept the answer TMDB gave them before (a record, not
    found, deleted): a failure never replaces an answer. They are listed, with why they
    failed, in the manifest's ``held_failures``. ``blocked`` ids live in a damaged file
    of the folder: they keep that place, their new results are not written, and the run
    ends with the file's name (exit 3).
    """

    source: str
    dest: str
    date: str
    status: str = "ok"  # ok | failed_ids | incomplete | error
    unique_ids: int = 0
    records: int = 0
    not_found: int = 0
    invalid: int = 0
    failed: int = 0
    deleted: int = 0
    still_deleted: int = 0
    kept: int = 0
    skipped: int = 0
    replaced: int = 0
    held: int = 0
    blocked: int = 0
    rewritten: int = 0
    files: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    manifest: str | None = None
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    throttled_429: int = 0
    rows_read: int = 0
    #: The distinct ids of the whole source, once the reader went through to its end (an
    #: ``--offset`` past the end says how many there are); ``None`` when it stopped before.
    source_ids: int | None = None
    next_offset: int | None = None
    #: With ``next_offset``, the ``limit`` that covers exactly the rest of the slice (the
    #: given limit less what was consumed); ``None`` when the slice had no limit.
    next_limit: int | None = None
    remaining_items: list[dict[str, str]] | None = None
    error: str | None = None
    held_failures: list[dict[str, Any]] = field(default_factory=list)  # manifest only

    @property
    def exit_code(self) -> ExitCode:
        return {
            "ok": ExitCode.OK,
            "failed_ids": ExitCode.FAILED_IDS,
            "incomplete": ExitCode.INCOMPLETE,
        }.get(self.status, ExitCode.BAD_INPUT)

    def manifest_fields(
        self, tmdb: dict[str, Any], timeline: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What the run's manifest holds when it ends (see lake.manifest.Manifest).
        ``timeline``: its requests, 429s and ids per second
        (:meth:`tmdb_async.tmdb.client.Timeline.as_dict`), null when it did nothing."""
        return dict(
            outcome=self.status,
            counts={
                name: getattr(self, name)
                for name in (
                    "unique_ids",
                    "records",
                    "not_found",
                    "invalid",
                    "failed",
                    "deleted",
                    "still_deleted",
                    "kept",
                    "skipped",
                    "replaced",
                    "held",
                    "blocked",
                    "rewritten",
                    "rows_read",
                )
            },
            files=self.files,
            sidecars=self.sidecars,
            held_failures=self.held_failures,
            next_offset=self.next_offset,
            next_limit=self.next_limit,
            seconds=self.seconds,
            tmdb=tmdb,
            timeline=timeline,
            error=self.error,
        )

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["files_written"] = len(self.files)
        data["exit_code"] = int(self.exit_code)
        if self.remaining_items is None:
            del data["remaining_items"]
        del data["held_failures"]
        return data


@dataclass(slots=True)
class Estimate:
    """What a run would do, told before it does it (``--dry-run``; the replacement guard's
    figures). Every distinct id of the slice is counted once: ``kept`` (the date folder
    holds it from an equivalent run), ``rewritten`` (held in files of another format and
    moved into this one without a request, with ``--replace``), ``skipped``
    (``--skip-existing``), ``invalid`` (never sent), or to fetch: ``by_map`` (the id map
    knows it: 1 request) or ``unknown`` (1 to 3 requests). ``replaced`` of those fetched
    have an answer in the folder; ``replaced_other`` of them from other record settings,
    ``differing`` names how. ``other_format``: the folder's data files of another format.
    A refresh's dry run reads the change lists (``change_lists``): those requests are spent.
    """

    source: str
    dest: str
    date: str
    format: str
    rate: float
    unique_ids: int = 0
    source_ids: int | None = None
    kept: int = 0
    rewritten: int = 0
    skipped: int = 0
    invalid: int = 0
    by_map: int = 0
    unknown: int = 0
    unknown_high: int = 3  # requests an unknown id may cost (1 with --detail find)
    replaced: int = 0
    replaced_other: int = 0
    differing: list[str] = field(default_factory=list)
    other_format: dict[str, int] = field(default_factory=dict)  # format -> data files
    change_lists: bool = False
    change_list_requests: int = 0  # what a refresh's dry run spent reading them
    note: str | None = None  # a refresh already up to date says so
    refused: str | None = None  # the guard's line: the run would stop before its first request

    @property
    def to_fetch(self) -> int:
        return self.by_map + self.unknown

    @property
    def requests(self) -> tuple[int, int]:
        """Fewest and most title requests the run would send (retries not counted)."""
        return self.by_map + self.unknown, self.by_map + self.unknown_high * self.unknown

    @property
    def seconds(self) -> tuple[float, float]:
        """How long those requests take at ``rate`` (TMDB's answers permitting)."""
        low, high = self.requests
        return round(low / self.rate, 1), round(high / self.rate, 1)

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["status"] = "dry_run"
        data["to_fetch"] = self.to_fetch
        data["requests_min"], data["requests_max"] = self.requests
        data["seconds_min"], data["seconds_max"] = self.seconds
        data["exit_code"] = 0
        return data
