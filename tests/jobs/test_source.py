"""Reading ids: the CSV reader finds, validates and de-duplicates ids, or says exactly why not."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmdb_async.errors import InputError
from tmdb_async.imdb import check_id
from tmdb_async.jobs.source import (
    BITMAP_NUMBERS,
    MAX_LINE_BYTES,
    IdEntry,
    ReadStats,
    _SeenIds,
    read_csv_ids,
    read_item_ids,
)
from tmdb_devtools.csvgen import MOVIE_HEADER, SERIES_HEADER


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
    assert "tt + 7 to 9 digits" in (problems["tt12"] or "")
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
        (b'id|"a"|b\rc\ntt0000001|x|y\n', "f.csv: line 2: 1 fields, the header has 3"),
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
    # both are reported, each once, and non-canonical values never collide with the bitmap;
    # only the canonical one is valid (the padded one names it).
    text = "id\ntt0000001\ntt00000001\ntt0000001\ntt00000001\ntt10000000\ntt10000000\nx\nx\n"
    entries = await read(text)
    assert ids(entries) == ["tt0000001", "tt00000001", "tt10000000", "x"]
    assert [e.problem is None for e in entries] == [True, False, True, False]
    assert "write tt0000001" in (entries[1].problem or "")


# --- One canonical form per title, ASCII digits only, bounded memory (issue 8 rows 10, 15, 16)

CANONICAL = re.compile(r"tt(?:[0-9]{7}|[1-9][0-9]{7,8})")  # the rule, written independently


def column(values: list[str]) -> str:
    """A two-column '|' file with ``values`` in the id column, written by the csv module."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="|", lineterminator="\n")
    writer.writerow(["id", "other"])
    writer.writerows([value, "x"] for value in values)
    return out.getvalue()


@pytest.mark.parametrize(
    "imdb_id",
    [
        "tt\uff10\uff11\uff13\uff13\uff10\uff19\uff13",  # full-width tt０１３３０９３
        "tt\u0660\u0661\u0663\u0663\u0660\u0669\u0663",  # Arabic-Indic tt٠١٣٣٠٩٣
        "tt\u0966\u0967\u0969\u0969\u0966\u096f\u0969",  # Devanagari
        "tt013309\uff13",  # one full-width digit among ASCII ones
        "tt\u00b2133093",  # superscript two: str.isdigit() says yes, int() says no
    ],
)
async def test_ids_with_non_ascii_digits_are_invalid_and_never_fetched(imdb_id: str) -> None:
    entries = await read(column(["tt0133093", imdb_id, imdb_id]))
    assert ids(entries) == ["tt0133093", imdb_id]  # listed once, like any invalid value
    assert entries[0].problem is None
    assert entries[1].problem is not None  # the pipeline sends only problem-free ids to TMDB
    assert entries[1].problem.startswith("not an IMDb title id: ASCII digits 0-9 only")
    assert [(e.imdb_id, e.problem) for e in read_item_ids([{"id": imdb_id}])] == [
        (imdb_id, entries[1].problem)
    ]


async def test_zero_padded_variants_of_one_number_are_rejected_naming_the_canonical_form() -> None:
    values = ["tt1000001", "tt01000001", "tt001000001", "tt0000000000000001000001",
              "TT0133093", "Tt00133093", "tt0133093", "tt10000000", "tt010000000"]  # fmt: skip
    entries = await read(column(values + values))
    assert ids(entries) == values  # each raw value once, in first-seen order
    problems = {e.imdb_id: e.problem for e in entries}
    assert [v for v in values if problems[v] is None] == ["tt1000001", "tt0133093", "tt10000000"]
    for padded in ("tt01000001", "tt001000001", "tt0000000000000001000001"):
        assert problems[padded] == "not the canonical form of this IMDb id: write tt1000001"
    assert problems["TT0133093"] == "not the canonical form of this IMDb id: write tt0133093"
    assert problems["Tt00133093"] == "not the canonical form of this IMDb id: write tt0133093"
    assert problems["tt010000000"] == "not the canonical form of this IMDb id: write tt10000000"
    # never fetched twice: one valid entry per number
    assert check_id("tt1000001") is None
    assert [e.imdb_id for e in read_item_ids(values) if e.problem is None] == [
        "tt1000001",
        "tt0133093",
        "tt10000000",
    ]


@pytest.mark.parametrize("digits", [10, 12, 20, 5000, 200_000])
async def test_an_id_longer_than_imdb_could_issue_is_invalid_not_a_crash(digits: int) -> None:
    huge = "tt" + "9" * digits  # 5000+ digits: past int()'s default str-digits limit
    entries = await read(column(["tt999999999", "tt100000000", huge, huge]), size=65536)
    assert ids(entries) == ["tt999999999", "tt100000000", huge]
    assert [e.problem is None for e in entries] == [True, True, False]
    reason = entries[2].problem or ""
    assert reason == f"longer than IMDb could issue: a {digits}-digit number (at most 9)"
    assert len(reason) < 80  # never echoes the value


@pytest.mark.parametrize(
    "value",
    ["tt12", "nm0000001", "tt", "tt 0133093", "x" * 100_000, "tt" + "\u0660" * 100_000],
)
def test_every_reason_is_one_short_line_whatever_the_value(value: str) -> None:
    reason = check_id(value) or ""
    assert reason and "\n" not in reason and len(reason) <= 100


async def test_memory_stays_bounded_for_huge_id_numbers() -> None:
    huge = ["tt999999999", "tt134217728", "tt" + "9" * 12, "tt" + "1" * 12, "tt" + "9" * 20]

    async def chunks() -> AsyncIterator[bytes]:
        yield b"id|t\n"
        for n in range(10_000):  # 10,000 distinct valid ids above the bitmap's range, too
            yield f"tt{999_999_999 - n}|x\n".encode()
        for value in huge:
            yield f"{value}|x\n".encode()

    valid = invalid = 0
    tracemalloc.start()
    try:
        async for entry in read_csv_ids(chunks(), where="f.csv"):
            valid, invalid = valid + (entry.problem is None), invalid + (entry.problem is not None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (valid, invalid) == (10_000 + 1, 3)  # tt134217728 valid; tt999999999 seen already
    # the bitmap stays empty (it would be 125 MB for tt999999999); the 10,001 large numbers
    # are a set of ints (~1.5 MiB at its peak, while the set resizes). Measured: 1.58 MiB.
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.2f} MiB"


async def test_memory_stays_bounded_for_many_long_invalid_values() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"id|t\n"
        for n in range(300):  # 300 distinct 100 kB values: 30 MB if they were all kept
            yield f"{n:06d}".encode() + b"y" * 100_000 + b"|x\n"
        yield b"000007" + b"y" * 100_000 + b"|x\n"  # a repeat, recognised by its digest

    tracemalloc.start()
    try:
        count = 0
        async for entry in read_csv_ids(chunks(), where="f.csv"):
            count += 1
            assert entry.problem is not None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 300
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_the_bitmap_never_grows_past_its_bound() -> None:
    seen = _SeenIds()
    assert seen.add_number(BITMAP_NUMBERS - 1) and not seen.add_number(BITMAP_NUMBERS - 1)
    assert len(seen._bits) == BITMAP_NUMBERS // 8 == 16 * 2**20  # (max RSS grows 16.1 MiB)
    assert seen.add_number(BITMAP_NUMBERS) and not seen.add_number(BITMAP_NUMBERS)
    assert seen.add_number(999_999_999) and len(seen._bits) == BITMAP_NUMBERS // 8


@pytest.mark.parametrize("delimiter", [",", "|", ";", "\t"])
async def test_a_quoted_header_field_holding_the_delimiter_is_valid_csv(delimiter: str) -> None:
    d = delimiter
    text = (
        f'tconst{d}"title{d} original"{d}year\n'
        f'tt0133093{d}"Matrix{d} The"{d}1999\n'
        f"tt0110912{d}Pulp Fiction{d}1994\n"
        f'"tt0068646"{d}"The ""Godfather"""{d}1972\n'
    )
    assert ids(await read(text)) == ["tt0133093", "tt0110912", "tt0068646"]
    # the header's 3 fields are counted the way rows' are, quoted or not
    with pytest.raises(InputError, match=r"f\.csv: line 3: 4 fields, the header has 3"):
        await read(text.replace(f"Pulp Fiction{d}", f"Pulp{d}Fiction{d}"))
    with pytest.raises(InputError, match=r"f\.csv: line 2: 2 fields, the header has 3"):
        await read(text.replace(f'"Matrix{d} The"{d}', ""))


async def test_a_quoted_header_name_is_found_after_a_quoted_field() -> None:
    text = 'titulo,"a, b","id"\nx,"1, 2",tt0000001\ny,z,tt0000002\n'
    assert ids(await read(text)) == ["tt0000001", "tt0000002"]


async def test_a_lone_cr_inside_a_row_ends_its_line_which_is_named() -> None:
    # a lone carriage return ends a line wherever it is, in quotes or not (as Python reads)
    text = 'id|a|b\ntt0000001|"x"|y\ntt0000002|"x"|y\rz\n'
    with pytest.raises(InputError, match=r"^f\.csv: line 4: 1 fields, the header has 3"):
        await read(text)


@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
@pytest.mark.parametrize("size", [1, 2, 7, 4096])
async def test_cr_only_line_ends_are_read_like_lf_and_crlf(end: str, size: int) -> None:
    """Old Excel for Mac ends lines with CR alone; a CRLF cut between two chunks is one end."""
    lines = ["id|a", "tt0000001|x", '"tt0000002"|"y"', "", "tt0000003|z"]
    entries = await read(end.join(lines) + end, size=size)
    assert [(e.imdb_id, e.line) for e in entries] == [
        ("tt0000001", 2),
        ("tt0000002", 3),
        ("tt0000003", 5),
    ]


async def test_a_quoted_field_is_limited_by_the_line_limit_alone() -> None:
    """The csv module's own field limit (128 Ki characters, process-global) is not ours: a
    quoted field up to the 1 MiB line limit is read, and the global is left as it was."""
    before = csv.field_size_limit()
    big = "y" * (MAX_LINE_BYTES - 100)
    entries = await read(f'id|a\ntt0000001|"{big}"\ntt0000002|"x"\n', size=65536)
    assert ids(entries) == ["tt0000001", "tt0000002"]
    assert csv.field_size_limit() == before
    with pytest.raises(InputError, match=r"f\.csv: line 2: longer than"):
        await read(f'id|a\ntt0000001|"{big * 2}"\n', size=65536)


@st.composite
def id_columns(draw: st.DrawFn) -> list[str]:
    """Values for the id column: arbitrary text and near-misses of IMDb ids, with repeats."""
    digits = st.text(alphabet="0123456789\u0660\u0669\uff10\uff19\u00b2", max_size=22)
    near = st.builds(
        lambda pad, prefix, body, tail: pad + prefix + body + tail,
        st.sampled_from(["", " ", "\t", "\u3000"]),
        st.sampled_from(["tt", "TT", "tT", "nm", ""]),
        digits | st.integers(0, 10**12).map(str) | st.integers(0, 10**9).map("{:07d}".format),
        st.sampled_from(["", " ", "x", '"']),
    )
    anything = st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=30
    )
    pool = draw(st.lists(near | anything | st.just("\\N"), min_size=1, max_size=25))
    order = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=60))
    return [pool[i] for i in order]


@settings(max_examples=300, deadline=None)
@given(values=id_columns(), size=st.integers(1, 64))
def test_any_id_column_is_read_into_distinct_values_with_one_valid_entry_per_number(
    values: list[str], size: int
) -> None:
    text = column(values)
    assert next(csv.reader(io.StringIO(text), delimiter="|")) == ["id", "other"]  # valid CSV
    entries = asyncio.run(read(text, size=size))  # no exception: not even an InputError
    stripped = [value.strip() for value in values]
    assert ids(entries) == list(dict.fromkeys(stripped))  # each distinct value once, in order
    assert [e.position for e in entries] == list(range(len(entries)))
    assert [e.line for e in entries] == [stripped.index(e.imdb_id) + 2 for e in entries]
    valid = [e.imdb_id for e in entries if e.problem is None]
    assert valid == [e.imdb_id for e in entries if CANONICAL.fullmatch(e.imdb_id)]
    assert len({int(v[2:]) for v in valid}) == len(valid)  # no number fetched twice
    for e in entries:
        assert e.problem is None or ("\n" not in e.problem and len(e.problem) <= 100)
    # a Distributed Map batch of the same values gives the same entries, line aside
    items = [(e.imdb_id, e.problem) for e in read_item_ids(values)]
    assert items == [(e.imdb_id, e.problem) for e in entries]
