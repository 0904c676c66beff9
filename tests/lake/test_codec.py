"""What counts as a data file of a date folder (``tmdb_async/writer.py``): the one rule the
refresh (the newest ingest date) and the id-map rebuild (the files to learn from) share;
and the bytes of a data file, which give back every code point written."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, run
from tmdb_async.errors import StorageError
from tmdb_async.lake.codec import decode_file, encode_file
from tmdb_async.lake.idmap import rebuild
from tmdb_async.lake.layout import data_file_date, date_folder
from tmdb_async.lake.ledger import Ledger
from tmdb_async.lake.storage import LocalStore
from tmdb_devtools import fake_tmdb
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


@pytest.mark.parametrize(
    ("key", "date"),
    [
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.json", dt.date(2022, 5, 2)),
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.jsonl", dt.date(2022, 5, 2)),
        ("Raw/TMDB/JSON/2022/05/02/_sidecars/not_found-0001.json", None),
        ("Raw/TMDB/JSON/2022/05/02/_ledger/log/0000000001.json", None),
        ("Raw/TMDB/JSON/2022/05/02/_manifests/run.json", None),
        ("Raw/TMDB/JSON/2022/05/02/.movies-0001.json.tmp-1a2b", None),  # a local temp file
        ("Raw/TMDB/JSON/2022/05/02/movies-0001.csv", None),
        ("Raw/TMDB/JSON/2022/13/45/movies-0001.json", None),  # not a date
        ("Raw/TMDB/JSON/2022/05/movies-0001.json", None),
        ("Raw/TMDB/_state/refresh.json", None),
    ],
)
def test_a_data_file_is_json_at_the_top_of_a_date_folder(key: str, date: dt.date | None) -> None:
    assert data_file_date(key) == date


def test_every_date_folder_names_its_own_date() -> None:
    day = dt.date(2026, 11, 24)
    assert data_file_date(f"{date_folder(day)}/x.json") == day


#: Every code point some reader takes for a line end: ``str.splitlines`` splits at all of them.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@settings(max_examples=200, deadline=None)
@example(texts=["a\u2028b\u2029c\x85d"], name="m-00000001-00.jsonl")
@given(
    texts=st.lists(
        st.text(alphabet=st.sampled_from(LINE_BREAKS) | st.characters(codec="utf-8"), max_size=30),
        min_size=1,
        max_size=5,
    ),
    name=st.sampled_from(["m-00000001-00.jsonl", "m-00000001-00.json", "_sidecars/m.json"]),
)
def test_every_code_point_round_trips_through_a_data_file(texts: list[str], name: str) -> None:
    records = [
        {"imdb_id": f"tt{i:07d}", "overview": text, "title": text[::-1]}
        for i, text in enumerate(texts)
    ]
    data = encode_file(name, records)
    assert decode_file(name, data) == records
    if name.endswith(".jsonl"):  # one line per record, as every JSON Lines reader frames it
        assert data.count(b"\n") == len(records)
        assert [json.loads(line) for line in data.split(b"\n")[:-1]] == records


def _jsonl(csv_path: Path, lake: Path, url: str, **changes: object) -> Settings:
    """A run of ``csv_path`` into ``lake``'s 2022-05-02 folder, written as JSON Lines."""
    return Settings(
        source=str(csv_path),
        dest=str(lake),
        credentials=Credentials(read_access_token=TOKEN),
        tmdb_url=url,
        date=dt.date(2022, 5, 2),
        rate=1000.0,
        output_format="jsonl",
        **changes,  # type: ignore[arg-type]
    )


async def test_an_overview_with_a_unicode_line_separator_never_wedges_a_jsonl_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMDB overview with U+2028, U+2029 and U+0085 in a ``--format jsonl`` folder: a rerun
    with other settings moves every id out of its file (exit 0, each id once, the text
    kept) and ``idmap`` rebuild learns every title."""
    text = "one\u2028two\u2029three\x85four"
    original = fake_tmdb._overview
    monkeypatch.setattr(fake_tmdb, "_overview", lambda core, lang: original(core, lang) + text)
    ids = title_ids(30, "movie", start=4_800_000)
    csv_path = write_csv(tmp_path / "m.csv", ids)
    lake = tmp_path / "lake"
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        first = await run(_jsonl(csv_path, lake, fake.url))
        second = await run(
            _jsonl(csv_path, lake, fake.url, language="fr-FR", replace=True)
        )  # all move
    found = sum(1 for i in ids if kind_of(int(i[2:])) is not None)
    assert first.records == second.records == found > 0 and second.failed == 0
    view = read_local(lake / "Raw/TMDB/JSON/2022/05/02")
    assert not view.duplicates() and view.all_ids() == set(ids)
    assert all(r["overview"].endswith(text) for places in view.records.values() for _, r in places)
    assert all("language=fr-FR" in places[0][1]["overview"] for places in view.records.values())
    rebuilt = await rebuild(LocalStore(str(lake)))
    assert rebuilt.titles == found


async def test_a_damaged_data_file_blocks_only_the_ids_it_holds(tmp_path: Path) -> None:
    """A data file truncated by hand: a run that must take ids out of it writes every other
    id, leaves that file's ids where they are, and ends with one line naming the file and a
    fix that loses nothing (exit 3). Nothing is decided that cannot be applied, so the
    folder is not wedged, and the damaged bytes stay."""
    ids_a, ids_b = title_ids(10, "movie", start=4_900_000), title_ids(10, "movie", start=5_000_000)
    csv_a, csv_b = write_csv(tmp_path / "a.csv", ids_a), write_csv(tmp_path / "b.csv", ids_b)
    both = write_csv(tmp_path / "both.csv", ids_a + ids_b)
    lake = tmp_path / "lake"
    folder = lake / "Raw/TMDB/JSON/2022/05/02"
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        await run(_jsonl(csv_a, lake, fake.url))
        await run(_jsonl(csv_b, lake, fake.url))
        [damaged] = folder.glob("a-*.jsonl")
        inside = [json.loads(line)["imdb_id"] for line in damaged.read_bytes().splitlines()]
        data = damaged.read_bytes()[:-30]  # the last record cut short
        damaged.write_bytes(data)
        with pytest.raises(StorageError) as caught:
            await run(_jsonl(both, lake, fake.url, language="fr-FR", replace=True))  # moves ids out
        message = str(caught.value)
        assert str(damaged) in message and "do not delete it" in message
        assert f"({len(inside)} ids kept their place)" in message and "\n" not in message
        again = await run(_jsonl(csv_b, lake, fake.url, language="fr-FR", replace=True))  # all kept
    assert again.status == "ok" and again.kept == len(ids_b)
    assert damaged.read_bytes() == data  # never rewritten nor deleted
    ledger = await Ledger(LocalStore(str(lake)), "Raw/TMDB/JSON/2022/05/02").load()
    for imdb_id in ids_a + ids_b:
        home = ledger.home(imdb_id)
        assert home is not None
        assert (home.file == damaged.name) == (imdb_id in inside), imdb_id
