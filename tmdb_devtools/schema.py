"""``python -m tmdb_devtools schema [--check]``: write ``docs/events.schema.json``, the JSON
Schema of every Lambda event, from the declarations that read them
(:func:`tmdb_async.events.events_schema`). ``--check`` writes nothing and exits 1 when the
file is not current (CI, and ``tests/test_events_schema.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tmdb_async.events import events_schema

#: Where the schema is shipped, from the repository's root.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"


def render() -> str:
    """The file's exact text: the same declarations always give the same bytes."""
    return json.dumps(events_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tmdb_devtools schema", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH, help="default %(default)s")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out}: stale; run `make schema`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
