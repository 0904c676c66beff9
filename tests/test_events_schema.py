"""docs/events.schema.json: the JSON Schema of every Lambda event, generated from the same
declarations that read events (:data:`tmdb_async.events.SHAPES`), current, and true to
the README's sample events and to the handler's refusals."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import ROOT
from tmdb_async.errors import UsageError
from tmdb_async.events import SHAPES, events_schema, handle
from tmdb_devtools.schema import SCHEMA_PATH, main, render

VALIDATOR = Draft202012Validator(events_schema())
ENV = {
    "TMDB_READ_ACCESS_TOKEN": "t0ken",
    "TMDB_ALLOWED_BUCKETS": "data-lake-x",
    "TMDB_DEST": "s3://data-lake-x",
}


def _readme_events() -> list[dict[str, Any]]:
    """The sample events of README.md's "Lambda" section (its ``...`` elisions dropped)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Lambda\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    texts = [text for text in block.split("\n\n") if text.strip()]
    return [json.loads(re.sub(r",\s*\.\.\.", "", text)) for text in texts]


def _shape_title(event: dict[str, Any]) -> str:
    matches = [
        title
        for title, shape in events_schema()["$defs"].items()
        if Draft202012Validator(shape).is_valid(event)
    ]
    assert len(matches) == 1, matches
    return matches[0]


def test_the_schema_file_is_what_the_declarations_generate() -> None:
    assert SCHEMA_PATH.read_bytes() == render().encode("utf-8")
    assert main(["--check"]) == 0


def test_a_stale_schema_file_is_reported_and_left_alone(tmp_path: Any) -> None:
    stale = tmp_path / "events.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1
    assert stale.read_text(encoding="utf-8") == "{}\n"
    assert main(["--out", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == render()


def test_the_schema_is_a_valid_draft_2020_12_schema_of_each_shape() -> None:
    Draft202012Validator.check_schema(events_schema())
    assert set(events_schema()["$defs"]) == {"run", "batch", "prepare", "refresh", "status"}


def test_the_readme_documents_all_four_shapes() -> None:
    titles = sorted(_shape_title(event) for event in _readme_events())
    assert titles == ["batch", "prepare", "refresh", "run"]


@pytest.mark.parametrize("event", _readme_events(), ids=lambda e: str(e.get("action", "")))
def test_every_readme_sample_event_validates_and_reads(event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)
    shape = next(s for s in SHAPES if s.title == _shape_title(event))
    shape.read(event, "event")  # the handler's reading accepts it too


#: Events the handler refuses before any I/O, each for one of the declared rules.
REFUSED: list[dict[str, Any]] = [
    {"source": "s3://data-lake-x/a.csv", "kind": "film"},
    {"source": "s3://data-lake-x/a.csv", "format": "csv"},
    {"source": "s3://data-lake-x/a.csv", "language": "portuguese"},
    {"source": "s3://data-lake-x/a.csv", "chunk_size": 101},
    {"source": "s3://data-lake-x/a.csv", "concurrency": 0},
    {"source": "s3://data-lake-x/a.csv", "rate": 0.001},
    {"source": "s3://data-lake-x/a.csv", "offset": -1},
    {"source": "s3://data-lake-x/a.csv", "skip_existing": "yes"},
    {"source": "s3://data-lake-x/a.csv", "append_to_response": "credits,Videos"},
    {"source": "s3://data-lake-x/a.csv", "global_rate": 40},
    {"source": "s3://data-lake-x/a.csv", "oops": 1},
    {"Items": "tt1"},
    {"Items": [], "BatchInput": []},
    {"Items": [], "BatchInput": {"max_concurrency": 0}},
    {"Items": [], "BatchInput": {"offset": 3}},
    {"action": "prepare", "source": "s3://data-lake-x/a.csv", "max_concurrency": "4"},
    {"action": "prepare", "source": "s3://data-lake-x/a.csv", "max_items_per_batch": 0},
    {"action": "prepare", "source": "s3://data-lake-x/a.csv", "execution": ""},
    {"action": "refresh", "kind": "tv"},
    {"action": "refresh", "since": 3},
]


@pytest.mark.parametrize("event", REFUSED, ids=lambda e: json.dumps(e)[:60])
async def test_what_the_handler_refuses_the_schema_refuses(event: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        await handle(event, None, ENV)
    assert not VALIDATOR.is_valid(event)


def test_jsonschema_is_a_dev_dependency_only() -> None:
    """The Lambda layer ships requirements.txt: the engine never imports jsonschema."""
    assert "jsonschema" not in (ROOT / "requirements.txt").read_text(encoding="utf-8")
    importing = re.compile(r"^\s*(import|from)\s+jsonschema\b", re.MULTILINE)
    for path in (ROOT / "tmdb_async").rglob("*.py"):
        assert not importing.search(path.read_text(encoding="utf-8")), path
