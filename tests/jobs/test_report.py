"""``report``: the lake as one self-contained HTML page, and the timelines it draws.

The lake is built by real runs against the fake TMDB: an ingest with a failed id, an invalid
one and 429 bursts, a refresh that finds titles TMDB deleted and carries a failure, and a
killed run. The page must hold every folder, run and failure of it, escaped, loading
nothing; a slow test renders it in headless Chromium and checks the picture."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.jobs.test_refresh import INGESTED, TODAY, config, expected, imdb, options
from tests.support.kill import Killed, KillingStore, declare_dead
from tmdb_async import run
from tmdb_async.jobs.refresh import Window, refresh
from tmdb_async.jobs.report import RunTimeline, lake_report, read_timelines, render_report
from tmdb_async.jobs.status import FailedId, LakeStatus, lake_status
from tmdb_async.lake.storage import LocalStore
from tmdb_async.tmdb.client import TIMELINE_POINTS, decode_counts
from tmdb_devtools.csvgen import write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb

KILLED = INGESTED + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("report")
    lake = tmp_path / "lake"
    ids = [imdb(n) for n in range(1, 121)]
    changed = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), config())
    gone = {imdb(3), imdb(8)}
    carried = sorted(changed - gone)[0]
    poison = sorted(set(ids) - changed - gone)[5]

    async def build() -> None:
        csv_path = write_csv(tmp_path / "in.csv", [*ids, "tt12x"])
        async with FakeTmdb(config(fault_ids=frozenset({poison}), burst_429=0.1)) as fake:
            first = await run(
                options(lake, fake.url, source=str(csv_path), date=INGESTED, max_attempts=2)
            )
            assert first.status == "failed_ids" and first.throttled_429 > 0
        cfg = config(removed_ids=frozenset(gone), fault_ids=frozenset({carried}))
        async with FakeTmdb(cfg) as fake:
            refreshed = await refresh(options(lake, fake.url, max_attempts=2))
            assert refreshed.deleted == 2 and refreshed.carried == [carried]
            more = write_csv(tmp_path / "more.csv", [imdb(n) for n in range(200, 400)])
            killed = options(lake, fake.url, source=str(more), date=KILLED, chunk_size=20)
            with pytest.raises(Killed):
                await run(killed, store=KillingStore(LocalStore(str(lake)), 14))  # type: ignore[arg-type]
        declare_dead(lake)

    asyncio.run(build())
    return lake


async def status_and_page(lake: Path) -> tuple[LakeStatus, str]:
    store = LocalStore(str(lake))
    found = await lake_status(store, failed=True)
    return found, render_report(found, await read_timelines(store, found))


def manifests(lake: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(lake.rglob("_manifests/*.json"))]


async def test_the_page_holds_every_folder_run_and_failure_of_the_lake(lake: Path) -> None:
    found, page = await status_and_page(lake)
    assert page == await lake_report(LocalStore(str(lake)))
    assert [f.date for f in found.folders] == [str(INGESTED), str(KILLED), str(TODAY)]
    for shown in found.folders:
        assert f">{shown.date}<" in page and html.escape(shown.path) in page
        for count in (shown.ids.total, shown.ids.record, shown.ids.not_found):
            assert f">{count:,}<" in page
        for one in found.folders[0].runs + shown.runs:
            assert one.run in page and html.escape(one.manifest) in page
    failures = [f for shown in found.folders for f in shown.failed or ()]
    assert len(failures) == 2  # the ingest's poison id and the refresh's carried one
    for failed in failures:
        assert f">{failed.imdb_id}</code>" in page and html.escape(failed.reason) in page
    assert found.refresh is not None and found.refresh.refreshed_through in page
    assert found.refresh.carried[0] in page
    refresh_runs = [r for f in found.folders for r in f.runs if r.source.startswith("refresh ")]
    assert refresh_runs and all(html.escape(r.source[8:]) in page for r in refresh_runs)
    (pin,) = found.in_progress
    assert pin.run in page and "interrupted" in page
    assert f"{found.idmap.titles:,} titles known ({found.idmap.deleted:,} deleted" in page


async def test_every_value_is_text_a_reason_with_a_script_tag_stays_text(lake: Path) -> None:
    found, _ = await status_and_page(lake)
    evil = "<script>alert('x')</script> & \"quoted\""
    first = found.folders[0]
    poisoned = dataclasses.replace(
        first,
        path=f"{first.path}/<b>bold</b>",
        failed=(FailedId("tt0000001", evil, 3, "_sidecars/<i>.json"),),
        runs=tuple(dataclasses.replace(r, source="<img src=x onerror=1>") for r in first.runs),
    )
    page = render_report(
        dataclasses.replace(found, dest="<dest>", folders=(poisoned, *found.folders[1:])), {}
    )
    assert "<script" not in page and "<b>bold" not in page and "<img" not in page
    assert "<i>.json" not in page and "<dest>" not in page
    assert html.escape(evil) in page and "&lt;img src=x onerror=1&gt;" in page


async def test_the_page_loads_nothing_no_script_no_link_no_remote_url(lake: Path) -> None:
    _, page = await status_and_page(lake)
    assert not re.search(r"(?i)<(script|link|iframe|img|object|embed)\b|\bsrc\s*=|href\s*=", page)
    assert not re.search(r"(?i)url\(|@import", page)
    assert "http://" not in page and "https://" not in page
    assert page.count("<svg") == 1 + sum(1 for m in manifests(lake) if m.get("timeline"))


async def test_each_run_s_timeline_is_in_its_manifest_and_adds_up_to_its_counts(
    lake: Path,
) -> None:
    written = manifests(lake)
    ingested = next(m for m in written if str(m["source"]).endswith("in.csv"))
    line = ingested["timeline"]
    assert isinstance(line, dict) and line["step"] == 1
    counts, tmdb = ingested["counts"], ingested["tmdb"]
    assert isinstance(counts, dict) and isinstance(tmdb, dict)
    assert sum(decode_counts(line["requests"])) == tmdb["requests"]
    assert sum(decode_counts(line["throttled"])) == tmdb["throttled_429"] > 0
    assert sum(decode_counts(line["ids"])) == counts["unique_ids"]
    for finished in (m for m in written if m.get("finished_at")):
        line = finished["timeline"]
        counts = finished["counts"]
        assert isinstance(line, dict) and isinstance(counts, dict)
        assert sum(decode_counts(line["ids"])) == counts["unique_ids"]
    running = [m for m in written if m["outcome"] == "running"]
    assert running and all("timeline" not in m for m in running)  # killed before its end


async def test_a_manifest_without_a_timeline_still_renders(lake: Path, tmp_path: Path) -> None:
    """Manifests written before timelines existed: their runs show, with a note."""
    old = tmp_path / "old"
    shutil.copytree(lake, old)
    for path in old.rglob("_manifests/*.json"):
        body = json.loads(path.read_text())
        body.pop("timeline", None)
        path.write_text(json.dumps(body))
    found, page = await status_and_page(old)
    assert await read_timelines(LocalStore(str(old)), found) == {}
    assert page.count("No timeline") == sum(len(f.runs) for f in found.folders)
    assert "<svg" in page  # the folders' chart


def test_a_timeline_that_is_not_one_is_left_out() -> None:
    assert RunTimeline.of(None) is None
    assert RunTimeline.of({"step": 1, "requests": "1,x", "throttled": "", "ids": ""}) is None
    assert RunTimeline.of({"step": 0, "requests": "1", "throttled": "0", "ids": "1"}) is None
    line = RunTimeline.of({"t0": "T", "step": 2, "requests": "3*2", "throttled": "0*2", "ids": "1"})
    assert line == RunTimeline("T", 2, (3, 3), (0, 0), (1,)) and line.seconds == 4


async def test_a_1000_id_run_s_timeline_is_a_few_hundred_bytes_and_bounded_by_its_points(
    tmp_path: Path,
) -> None:
    """The size is bounded by construction, not by how fast the run went: at most
    TIMELINE_POINTS buckets per series, each written as its digits and a comma (runs of equal
    values shorter still), so it can never exceed points x (digits of the largest bucket + 1)
    per series. Measured here on 1,000 ids."""
    lake = tmp_path / "lake"
    ids = [imdb(n) for n in range(1, 1001)]
    async with FakeTmdb(config(burst_429=0.02)) as fake:
        done = await run(
            options(lake, fake.url, source=str(write_csv(tmp_path / "in.csv", ids)), date=INGESTED)
        )
    assert done.unique_ids == 1000
    (manifest,) = manifests(lake)
    line = manifest["timeline"]
    assert isinstance(line, dict)
    size = len(json.dumps(line))
    series = {n: decode_counts(line[n]) for n in ("requests", "throttled", "ids")}
    points = len(series["requests"])
    assert all(len(s) == points for s in series.values()) and points <= TIMELINE_POINTS
    bound = 120 + sum(points * (len(str(max(s))) + 1) for s in series.values())
    assert size <= bound
    assert sum(series["ids"]) == 1000 and sum(series["requests"]) == done.requests
    print(f"timeline of a 1,000-id run: {size} bytes, {points} points of {line['step']} s")


# --- in a real browser ------------------------------------------------------------------------


def png_colours(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours) of an 8-bit RGB or RGBA PNG, with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, []
    width = height = colour = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    prev, seen = bytearray(stride), set()
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            seen.update(bytes(line[i : i + 3]) for i in range(0, stride, bpp * 2))
        prev = line
    return width, height, len(seen)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    """Headless Chromium, as the probe started it: a new empty profile, nothing fetched."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    profile.mkdir()
    subprocess.run(
        [
            chromium,
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_chromium_renders_the_report_to_a_real_picture(lake: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(await lake_report(LocalStore(str(lake))), encoding="utf-8")
    png = tmp_path / "report.png"
    await asyncio.to_thread(screenshot, page, png, tmp_path / "profile")
    width, height, colours = png_colours(png.read_bytes())
    assert (width, height) == (1280, 2000)
    assert png.stat().st_size > 20_000 and colours > 50  # text, bars, badges: not a blank page
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>x</title>", encoding="utf-8")
    await asyncio.to_thread(screenshot, blank, tmp_path / "blank.png", tmp_path / "profile2")
    assert png_colours((tmp_path / "blank.png").read_bytes())[2] < 5  # the check can fail
