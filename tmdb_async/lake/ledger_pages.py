"""The ledger's checkpoint as pages: a folder's state cut by IMDb number, so that a reader
reads the part its ids need and a checkpoint rewrites the part that changed.

::

    _ledger/checkpoint.json                the root: the version, and every page's range
                                           (zlib-compressed JSON; format 1 was plain)
    _ledger/pages/0000000128-0003.jz       one page: the homes of the ids in its range

A page holds the homes of the canonical ids whose numbers lie in its ``[low, high]``
(sorted, at most :data:`PAGE_IDS` … ``2 * PAGE_IDS`` ids), zlib-compressed JSON: a table
of the page's distinct homes, the numbers as gaps from the previous one, and each id's
slot in the table. Ids that are not canonical IMDb ids (an invalid value's label) live in
one extra page, ``others``, keyed by their text. Pages never overlap, and a page is never
changed in place: a checkpoint writes new pages for the ranges its commits touched and a
new root that names them beside the untouched ones.

Why: one checkpoint of the whole folder (2.3 MB at 300,000 ids) made every Distributed Map
child read and parse all of it, and every checkpoint rewrote all of it. A child's ids are a
contiguous run of prepare's sorted ids, so it reads the root and the pages its run
overlaps (none, when the folder holds no id of its range); a checkpoint after a batch
rewrites the one or two pages the batch landed in.
"""

from __future__ import annotations

import json
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tmdb_async.lake.homes import Home

PAGE_IDS: Final = 4096
"""Ids per page when pages are cut; a page that grows past twice this is cut again."""
ROOT_FORMAT: Final = 2  # 1 (no "format" key): every home in the root itself, as groups


@dataclass(frozen=True, slots=True)
class PageRef:
    """One page as the root names it: the checkpoint that wrote it and its serial there
    (its key, :attr:`key`), the range of the numbers it holds (``low`` ≤ ``high``; ``-1``
    for the others page) and how many."""

    version: int
    serial: int
    low: int
    high: int
    count: int

    @property
    def key(self) -> str:
        """Relative to the folder."""
        return page_key(self.version, self.serial)

    def overlaps(self, numbers: Sequence[int]) -> bool:
        """Whether any of ``numbers`` (sorted) lies in this page's range."""
        at = bisect_right(numbers, self.high)
        return at > 0 and numbers[at - 1] >= self.low

    def as_json(self) -> list[int]:
        return [self.version, self.serial, self.low, self.high, self.count]


@dataclass(frozen=True, slots=True)
class Root:
    """The checkpoint's root: its version, the pages (sorted by range), the others page,
    and the pages this checkpoint replaced (deleted by the next one, once no reader that
    read the previous root can still want them)."""

    version: int
    previous: int
    pages: tuple[PageRef, ...]
    others: PageRef | None
    retired: tuple[str, ...]

    def encode(self) -> bytes:
        body = {
            "format": ROOT_FORMAT,
            "version": self.version,
            "previous": self.previous,
            "pages": [p.as_json() for p in self.pages],
            "others": None if self.others is None else self.others.as_json(),
            "retired": list(self.retired),
        }
        # Compressed: every batch reads the root, and its page ranges are most of it.
        return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)

    def wanted(self, numbers: Sequence[int], others: bool) -> list[PageRef]:
        """The pages that can hold any of ``numbers`` (sorted), and the others page if
        ``others``."""
        found = [p for p in self.pages if p.overlaps(numbers)]
        if others and self.others is not None:
            found.append(self.others)
        return found


def checkpoint_body(raw: bytes) -> Any:
    """The JSON of a checkpoint file: a root (compressed) or a format-1 checkpoint (plain
    JSON, ``{`` first). Raises ``ValueError`` (``zlib.error`` included) when damaged."""
    try:
        return json.loads(raw if raw[:1] == b"{" else zlib.decompress(raw))
    except zlib.error as exc:
        raise ValueError(str(exc)) from None


def decode_root(body: Mapping[str, Any]) -> Root:
    """A format-2 root (raises ``KeyError``/``TypeError``/``ValueError`` when damaged)."""

    def ref(value: Any) -> PageRef:
        version, serial, low, high, count = value
        return PageRef(int(version), int(serial), int(low), int(high), int(count))

    others = body.get("others")
    return Root(
        version=int(body["version"]),
        previous=int(body.get("previous", 0)),
        pages=tuple(ref(p) for p in body["pages"]),
        others=None if others is None else ref(others),
        retired=tuple(str(k) for k in body.get("retired", ())),
    )


def page_key(version: int, serial: int) -> str:
    return f"_ledger/pages/{version:010d}-{serial:04d}.jz"


def encode_page(items: Iterable[tuple[int | str, Home]]) -> bytes:
    """A page of ``items`` (number or key, home), sorted by the caller."""
    homes: dict[Home, int] = {}
    keys: list[int | str] = []
    slots: list[int] = []
    previous = 0
    for key, home in items:
        if isinstance(key, int):
            keys.append(key - previous)
            previous = key
        else:
            keys.append(key)
        slots.append(homes.setdefault(home, len(homes)))
    table = [[h.file, h.outcome, h.shape] for h in homes]
    body = json.dumps({"homes": table, "keys": keys, "slots": slots}, separators=(",", ":"))
    return zlib.compress(body.encode(), 6)


def decode_page(raw: bytes) -> list[tuple[int | str, Home]]:
    """The (number or key, home) of a page, in its order (raises ``ValueError`` etc.)."""
    body = json.loads(zlib.decompress(raw))
    table = [Home(str(f), o, str(s)) for f, o, s in body["homes"]]
    found: list[tuple[int | str, Home]] = []
    previous = 0
    for key, slot in zip(body["keys"], body["slots"], strict=True):
        if isinstance(key, int):
            previous += key
            found.append((previous, table[slot]))
        else:
            found.append((str(key), table[slot]))
    return found


def cut(items: Sequence[tuple[int | str, Home]]) -> list[Sequence[tuple[int | str, Home]]]:
    """``items`` (sorted by number) as pages of :data:`PAGE_IDS`, the last one taking a
    remainder under half a page rather than leaving a runt."""
    if len(items) <= 2 * PAGE_IDS:
        return [items] if items else []
    pieces = [items[at : at + PAGE_IDS] for at in range(0, len(items), PAGE_IDS)]
    if len(pieces) > 1 and len(pieces[-1]) < PAGE_IDS // 2:
        pieces[-2:] = [[*pieces[-2], *pieces[-1]]]
    return pieces


def touched(pages: Sequence[PageRef], numbers: Iterable[int]) -> dict[int, list[int]]:
    """page index → the ``numbers`` it takes: the page whose range holds a number, else the
    page before it (the first page for a number below every range). Empty ``pages``: all
    go to index 0, a page to be made."""
    lows = [p.low for p in pages]
    found: dict[int, list[int]] = {}
    for number in numbers:
        at = max(0, bisect_right(lows, number) - 1)
        found.setdefault(at, []).append(number)
    return found
