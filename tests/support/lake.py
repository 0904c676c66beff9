"""Reading a date folder the way its users do: the files themselves, not the ledger.

Every test that checks output goes through :func:`read_local` / :func:`read_s3`, so the
layout is parsed in one place: top-level ``*.json``/``*.jsonl`` are data, ``_sidecars/`` hold
outcomes, everything else is bookkeeping in ``_``-prefixed folders.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmdb_async.lake.codec import json_lines


@dataclass
class FolderView:
    """What a date folder holds, by id. Lists, so that duplicates show."""

    records: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    outcomes: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    data_files: dict[str, int] = field(default_factory=dict)  # name -> records
    stray: list[str] = field(default_factory=list)  # top-level files that are not data

    def places(self, imdb_id: str) -> list[str]:
        """Every file holding ``imdb_id`` (a record or a sidecar entry)."""
        return [f for f, _ in self.records.get(imdb_id, [])] + [
            f for f, _ in self.outcomes.get(imdb_id, [])
        ]

    def state(self, imdb_id: str) -> tuple[str, str] | None:
        """(outcome, data file extension or "") of an id that is in exactly one place."""
        if imdb_id in self.records:
            name = self.records[imdb_id][0][0]
            return "record", name.rsplit(".", 1)[-1]
        if imdb_id in self.outcomes:
            return self.outcomes[imdb_id][0][1]["outcome"], ""
        return None

    def duplicates(self) -> dict[str, list[str]]:
        ids = set(self.records) | set(self.outcomes)
        return {i: self.places(i) for i in ids if len(self.places(i)) > 1}

    def all_ids(self) -> set[str]:
        return set(self.records) | set(self.outcomes)

    def id_counts(self) -> Counter[str]:
        """How many places (records and sidecar entries) each id has: exactly once means
        ``== Counter(ids)``."""
        return Counter({i: len(self.places(i)) for i in self.all_ids()})

    def record_ids(self) -> list[str]:
        return [i for i, places in self.records.items() for _ in places]


def _parse(name: str, data: bytes) -> list[dict[str, Any]]:
    if name.endswith(".jsonl"):  # framed by \n alone, as every JSON Lines reader does
        return [json.loads(line.decode("utf-8")) for line in json_lines(data)]
    items = json.loads(data.decode("utf-8"))  # data files must be valid UTF-8
    assert isinstance(items, list), name
    return items


def _view(files: Iterable[tuple[str, bytes]]) -> FolderView:
    view = FolderView()
    for name, data in files:
        if "/" not in name:
            if name.endswith((".json", ".jsonl")) and not name.startswith(("_", ".")):
                records = _parse(name, data)
                view.data_files[name] = len(records)
                for record in records:
                    view.records.setdefault(record["imdb_id"], []).append((name, record))
            elif not name.startswith("."):
                view.stray.append(name)
        elif name.startswith("_sidecars/"):
            for entry in _parse(name, data):
                view.outcomes.setdefault(entry["imdb_id"], []).append((name, entry))
    return view


def read_local(folder: Path) -> FolderView:
    if not folder.is_dir():
        return FolderView()
    files = [
        (path.relative_to(folder).as_posix(), path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    return _view(files)


def read_s3(s3: Any, bucket: str, folder: str) -> FolderView:
    prefix = folder.rstrip("/") + "/"
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            files.append((obj["Key"][len(prefix) :], body))
    return _view(files)
