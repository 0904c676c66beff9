"""Reading ids: the CSV reader finds, validates and de-duplicates ids, or says exactly why not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.csvgen import MOVIE_HEADER, SERIES_HEADER
from tmdb_async.errors import InputError
from tmdb_async.ids import MAX_LINE_BYTES, IdEntry, ReadStats, read_csv_ids, read_item_ids


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(
    data: bytes | str, *, size: int = 7, offset: int = 0, limit: int | None = None
) -> list[IdEntry]:
    raw = data.encode() if isinstance(data, str) else data
    return [
        entry
        async for entry in read_csv_ids(
            _chunks(raw, size), where="f.csv", offset=offset, limit=limit
        )
    ]


def ids(entries: list[IdEntry]) -> list[str]:
    return [entry.imdb_id for entry in entries]


def row(imdb_id: str, series: bool = False) -> str:
    width = len((SERIES_HEADER if series else MOVIE_HEADER).split("|"))
    return "|".join([imdb_id, *(["x"] * (width - 1))])


async def test_compass_rows_repeat_ids_and_are_read_once_in_first_seen_order() -> None:
    text = "\n".join(
        [MOVIE_HEADER, row("tt0000002"), row("tt0000002"), row("tt0000001"), row("tt0000002")]
    )
    entries = await read(text)
    assert ids(entries) == ["tt0000002", "tt0000001"]
    assert [e.position for e in entries] == [0, 1]
    assert [e.line for e in entries] == [2, 4]
    assert all(e.problem is None for e in entries)


async def test_series_header_with_anoTermino_is_read() -> None:
    entries = await read("\n".join([SERIES_HEADER, row("tt1234567", series=True)]))
    assert ids(entries) == ["tt1234567"]


@pytest.mark.parametrize("delimiter", ["|", ",", ";", "\t"])
@pytest.mark.parametrize("column", ["id", "imdb_id", "tconst", "ID"])
async def test_delimiter_and_id_column_are_detected(delimiter: str, column: str) -> None:
    text = f"title{delimiter}{column}\nA{delimiter}tt0000001\nB{delimiter}tt0000002\n"
    assert ids(await read(text)) == ["tt0000001", "tt0000002"]


async def test_bom_crlf_accents_and_quotes_are_handled() -> None:
    text = (
        "\ufeffid|titulo|personagem\r\n"
        'tt0000001|Ação|"Dirty" Harry\r\n'
        'tt0000002|"Título | com barra"|Zé\r\n'
    )
    assert ids(await read(text.encode("utf-8"))) == ["tt0000001", "tt0000002"]


async def test_invalid_and_null_ids_are_reported_not_dropped() -> None:
    text = "id|t\ntt0000001|a\ntt12|b\n\\N|c\nnm0000001|d\ntt12|e\n"
    entries = await read(text)
    assert ids(entries) == ["tt0000001", "tt12", "\\N", "nm0000001"]
    problems = {e.imdb_id: e.problem for e in entries}
    assert problems["tt0000001"] is None
    assert problems["\\N"] == "empty id"
    assert "tt + 7 or more digits" in (problems["tt12"] or "")
    assert problems["nm0000001"] is not None


async def test_offset_and_limit_slice_distinct_ids_without_overlap() -> None:
    text = "id\n" + "".join(f"tt{n:07d}\ntt{n:07d}\n" for n in range(10))
    whole = ids(await read(text))
    parts = [ids(await read(text, offset=o, limit=3)) for o in (0, 3, 6, 9)]
    assert [i for part in parts for i in part] == whole
    assert [e.position for e in await read(text, offset=4, limit=2)] == [4, 5]


async def test_reading_stops_once_the_slice_is_full() -> None:
    stats = ReadStats()
    text = "id\n" + "".join(f"tt{n:07d}\n" for n in range(100)) + "broken|line\n"
    got = [
        e async for e in read_csv_ids(_chunks(text.encode(), 64), where="f", limit=5, stats=stats)
    ]
    assert len(got) == 5
    assert stats.exhausted is False


async def test_blank_lines_are_skipped() -> None:
    assert ids(await read("id\n\ntt0000001\n\n")) == ["tt0000001"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "f.csv: empty file"),
        (b"id|titulo\n", "f.csv: no data rows after the header (line 1)"),
        (b"\n\n", "f.csv: line 1: empty header line"),
        (b"titulo|ano\nx|1\n", "f.csv: line 1: no id column"),
        (b"id:titulo\ntt0000001:x\n", "f.csv: line 1: unknown delimiter"),
        (b"id|a|b\ntt0000001|x|y\ntt0000002|x\n", "f.csv: line 3: 2 fields, the header has 3"),
        (b"id|a\ntt0000001|Jos\xe9\n", "f.csv: line 2: not UTF-8 (byte 0xe9"),
    ],
)
async def test_bad_files_fail_with_file_line_and_problem(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        await read(data)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


async def test_an_extremely_long_line_is_refused_with_its_line_number() -> None:
    data = b"id|a\ntt0000001|x\ntt0000002|" + b"y" * (MAX_LINE_BYTES + 10) + b"\n"
    with pytest.raises(InputError, match=r"f\.csv: line 3: longer than"):
        await read(data, size=65536)


def test_distributed_map_items_are_deduplicated_and_validated() -> None:
    items = [{"id": "tt0000001", "nomeArtista": "A"}, {"id": "tt0000001"}, {"tconst": "bad"}]
    entries = read_item_ids(items)
    assert [(e.imdb_id, e.problem is None) for e in entries] == [
        ("tt0000001", True),
        ("bad", False),
    ]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"titulo": "x"}], "Items[0]: no id field"),
        ([42], "Items[0]: expected an object"),
        ([{"id": 7}], "Items[0].id: expected a string id"),
    ],
)
def test_malformed_items_are_named(items: list[object], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_item_ids(items)


async def test_padded_and_canonical_forms_stay_distinct_values() -> None:
    # tt0000001 (canonical) and tt00000001 (extra zero) are different strings in the file:
    # both are reported, each once, and non-canonical values never collide with the bitmap.
    text = "id\ntt0000001\ntt00000001\ntt0000001\ntt00000001\ntt10000000\ntt10000000\nx\nx\n"
    assert ids(await read(text)) == ["tt0000001", "tt00000001", "tt10000000", "x"]
