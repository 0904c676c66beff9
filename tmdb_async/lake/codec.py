"""The data files' codec: JSON arrays (``.json``) and JSON Lines (``.jsonl``).

Records are TMDB's payload as returned. A payload holding a lone surrogate (``"\\ud83d"``,
valid JSON, not encodable as UTF-8) is written with JSON escapes instead of failing: the
file stays valid UTF-8 JSON and the text is kept exactly. JSON Lines are split on ``\\n``
alone (:func:`json_lines`): U+2028, U+2029 and U+0085 are text inside a record, not line ends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def _encode_one(item: Any) -> bytes:
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: keep it as a JSON escape
        return json.dumps(item, ensure_ascii=True, separators=(",", ":")).encode()


def encode_file(name: str, items: Sequence[Any]) -> bytes:
    """A data file (``.json`` array or ``.jsonl`` lines) or sidecar, by its name."""
    if name.endswith(".jsonl"):
        return b"".join(_encode_one(item) + b"\n" for item in items)
    return b"[" + b",".join(_encode_one(item) for item in items) + b"]"


def json_lines(data: bytes) -> list[bytes]:
    """The lines of a JSON Lines file, blank ones left out: the one place that frames them.

    The frame is ``\\n`` and nothing else (``\\r\\n`` too, as JSON allows the ``\\r`` as
    whitespace). ``str.splitlines`` would also split at U+2028, U+2029, U+0085 and the other
    Unicode line breaks, which JSON strings hold raw (a TMDB overview may): a file written
    with one could not be read back. Splitting the bytes, before decoding, cannot meet them.
    """
    return [line for line in data.split(b"\n") if line.strip()]


def decode_file(name: str, data: bytes) -> list[dict[str, Any]]:
    """The items of a file written by :func:`encode_file`; ``ValueError`` if damaged
    (``UnicodeDecodeError`` and ``json.JSONDecodeError`` are ``ValueError`` too)."""
    if name.endswith(".jsonl"):
        items = [json.loads(line.decode("utf-8")) for line in json_lines(data)]
    else:
        items = json.loads(data.decode("utf-8"))
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("not a list of JSON objects")
    return items
