"""Targets (one row per figure), the Markdown table in BENCHMARKS.md and its rewrite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import MARKDOWN, TABLE_END, TABLE_START


class Rows(list[dict[str, Any]]):
    """Target rows, in the order of the table."""

    def add(
        self, key: str, figure: str, value: float, fmt: str, target: str, met: bool | None
    ) -> None:
        self.append(
            {
                "key": key,
                "figure": figure,
                "value": value,
                "shown": fmt.format(value),
                "target": target,
                "met": met,
            }
        )


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure of the parts in ``result`` as a row: measured value, target, whether met."""
    rows = Rows()
    for key, part_rows in PARTS:
        if key in result:
            part_rows(rows, result[key])
    return list(rows)


def _rate_rows(rows: Rows, rate: dict[str, Any]) -> None:
    for detail in ("full", "find"):
        part = rate[detail]
        rows.add(
            f"rate_{detail}_wall",
            f"1. rate-bound, {detail}: wall ÷ (requests needed ÷ 40/s)",
            part["wall_over_ideal"],
            "{:.3f}",
            "≤ 1.05",
            part["wall_over_ideal"] <= 1.05,
        )
        rows.add(
            f"rate_{detail}_429",
            f"1. rate-bound, {detail}: 429 answers ÷ requests",
            part["share_429"],
            "{:.2%}",
            "≤ 1%",
            part["share_429"] <= 0.01,
        )
    seq = rate["sequential"]
    rows.add(
        "rate_seq_wall",
        "1. seeds' loop (find + details): wall ÷ (its requests ÷ 40/s)",
        seq["wall_over_ideal"],
        "{:.2f}",
        "baseline",
        None,
    )
    rows.add(
        "rate_speedup",
        "1. engine speed-up over the seeds' loop (per id)",
        seq["engine_speedup"],
        "{:.2f}×",
        "report",
        None,
    )


def _latency_rows(rows: Rows, lat: dict[str, Any]) -> None:
    rows.add(
        "latency_ratio",
        "2. latency-bound (c=20, 50 ms): engine ÷ bare aiohttp, ids/s",
        lat["ratio"],
        "{:.3f}",
        "≥ 0.9",
        lat["ratio"] >= 0.9,
    )


def _cpu_rows(rows: Rows, cpu: dict[str, Any]) -> None:
    rows.add(
        "cpu_ratio",
        "3. CPU-bound (c=64, no latency): engine ÷ bare aiohttp, ids/s",
        cpu["ratio"],
        "{:.3f}",
        "≥ 0.6",
        cpu["ratio"] >= 0.6,
    )
    rows.add(
        "cpu_engine_ms",
        "3. CPU ms per id, engine (user+sys)",
        cpu["engine_cpu_ms_per_id"],
        "{:.2f}",
        "report",
        None,
    )
    rows.add(
        "cpu_bare_ms",
        "3. CPU ms per id, bare aiohttp loop",
        cpu["bare_cpu_ms_per_id"],
        "{:.2f}",
        "report",
        None,
    )


def _memory_rows(rows: Rows, mem: dict[str, Any]) -> None:
    rows.add(
        "memory_ratio",
        f"4. peak RSS, {mem['large_ids']:,} ids ÷ {mem['small_ids']:,} ids",
        mem["ratio"],
        "{:.3f}",
        "≤ 1.3",
        mem["ratio"] <= 1.3,
    )
    rows.add(
        "memory_peak",
        f"4. peak RSS, {mem['large_ids']:,} ids (MB)",
        mem["large_peak_mb"],
        "{:.1f}",
        "< 256",
        mem["large_peak_mb"] < 256,
    )


def _cold_rows(rows: Rows, cold: dict[str, Any]) -> None:
    rows.add(
        "cold_ratio",
        "5. cold start: import handler ÷ import its libraries",
        cold["ratio"],
        "{:.3f}",
        "≤ 1.3",
        cold["ratio"] <= 1.3,
    )


def _scaling_rows(rows: Rows, scaling: dict[str, Any]) -> None:
    points = scaling["points"]
    low, high = points[0], points[-1]
    rows.add(
        "scaling_gain",
        f"6. scaling: ids/s at c={high['concurrency']} ÷ c={low['concurrency']}",
        high["engine_ids_per_s"] / low["engine_ids_per_s"],
        "{:.1f}×",
        "chart",
        None,
    )


#: Requests per title of scenario 7: case, figure, target (``None``: reported only).
REQUEST_TARGETS: tuple[tuple[str, str, float | None], ...] = (
    ("movies", "movies, --kind movie", 1.1),
    ("series", "series, --kind tv, first run", None),
    ("series_rerun", "series rerun (next --date, same --dest)", 1.05),
    ("mixed_blocks", "mixed in blocks, --kind auto", 1.5),
    ("mixed_interleaved", "mixed interleaved, --kind auto", None),
    ("fallback", "movies, TMDB without IMDb ids on /movie", 2.1),
)


def _requests_rows(rows: Rows, part: dict[str, Any]) -> None:
    cases = part["cases"]
    for name, label, target in REQUEST_TARGETS:
        value = cases[name]["requests_per_title"]
        rows.add(
            f"requests_{name}",
            f"7. requests ÷ title, {label}",
            value,
            "{:.3f}",
            "report" if target is None else f"≤ {target:g}",
            None if target is None else value <= target,
        )
        if name == "movies":
            wall = cases[name]["wall_over_request_bound"]
            rows.add(
                "requests_movies_wall",
                "7. movies: wall ÷ (requests ÷ 40/s)",
                wall,
                "{:.3f}",
                "≤ 1.05",
                wall <= 1.05,
            )
    rows.add(
        "requests_movies_gain",
        f"7. movies: titles per hour ÷ find + details "
        f"({part['movies_find_details_per_title']:.3f} requests per title)",
        part["movies_gain_over_find_details"],
        "{:.2f}×",
        "report",
        None,
    )


#: (key in the JSON result, its rows), in the order of the table.
PARTS: tuple[tuple[str, Callable[[Rows, dict[str, Any]], None]], ...] = (
    ("rate_bound", _rate_rows),
    ("latency_bound", _latency_rows),
    ("cpu_bound", _cpu_rows),
    ("memory", _memory_rows),
    ("cold_start", _cold_rows),
    ("scaling", _scaling_rows),
    ("requests_per_title", _requests_rows),
)


def markdown_table(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (Python {meta['python']}, "
        f"{meta['cpus']} CPUs), full run in {meta['seconds']:.0f} s.",
        "",
        "| Figure | Measured | Target | Met |",
        "| --- | ---: | --- | :---: |",
    ]
    for row in result["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['shown']} | {row['target']} | {met} |")
    rate = result["rate_bound"]
    lat, cpu, mem = result["latency_bound"], result["cpu_bound"], result["memory"]
    cold = result["cold_start"]
    heavy = ", ".join(cold["heavy_modules_loaded_by_handler"]) or "none"
    full, find, seq = rate["full"], rate["find"], rate["sequential"]
    lines += [
        "",
        "Details behind the ratios:",
        "",
        f"- Rate-bound, full: {rate['ids']} ids, {full['needed_requests']} requests needed, "
        f"ideal {full['ideal_seconds']:.1f} s, engine {full['run']['seconds']:.1f} s, "
        f"{full['run']['requests']} requests sent, {full['run']['throttled_429']} answered 429. "
        f"Find only: {find['needed_requests']} needed, ideal {find['ideal_seconds']:.1f} s, "
        f"engine {find['run']['seconds']:.1f} s, {find['run']['throttled_429']} × 429.",
        f"- Seeds' loop (find then details): {seq['ids']} ids, {seq['run']['requests']} "
        f"requests in {seq['run']['seconds']:.1f} s ({seq['seconds_per_id'] * 1000:.0f} ms per "
        f"id; {rate['ids']} ids would take ~{seq['projected_seconds_for_rate_ids']:.0f} s).",
        f"- Latency-bound: engine {lat['engine_ids_per_s']:.0f} ids/s, bare loop "
        f"{lat['bare_ids_per_s']:.0f} ids/s (median of {len(lat['pairs'])} alternating pairs; "
        f"{_per_id(lat)}).",
        f"- CPU-bound: engine {cpu['engine_ids_per_s']:.0f} ids/s, bare loop "
        f"{cpu['bare_ids_per_s']:.0f} ids/s ({_per_id(cpu)}); fake server "
        + (
            f"{cpu['server_cpu_ms_per_id']:.2f} CPU ms per id."
            if cpu["server_cpu_ms_per_id"] is not None
            else "CPU not measured."
        ),
        f"- Memory: {mem['small_peak_mb']:.1f} MB for {mem['small_ids']:,} ids, "
        f"{mem['large_peak_mb']:.1f} MB for {mem['large_ids']:,} ids "
        f"({mem['large_csv_rows']:,} CSV rows, {mem['large_csv_mb']:.0f} MB); "
        f"the interpreter with the engine imported holds {mem['imports_mb']:.1f} MB.",
        f"- Cold start (median of {cold['repeats']}): interpreter "
        f"{cold['median_seconds']['interpreter'] * 1000:.0f} ms, `import handler` "
        f"{cold['median_seconds']['handler'] * 1000:.0f} ms, the libraries "
        f"{cold['median_seconds']['libraries'] * 1000:.0f} ms, handler + aioboto3 "
        f"{cold['median_seconds']['handler_and_aioboto3'] * 1000:.0f} ms; heavy modules "
        f"loaded by `import handler`: {heavy}.",
        "",
        "| Concurrency | Engine ids/s | Bare ids/s | Engine ÷ bare "
        "| Ideal ids/s (c ÷ (latency × requests per id)) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for point in result["scaling"]["points"]:
        lines.append(
            f"| {point['concurrency']} | {point['engine_ids_per_s']:.1f} | "
            f"{point['bare_ids_per_s']:.1f} | {point['ratio']:.3f} | "
            f"{point['ideal_ids_per_s']:.1f} |"
        )
    lines += [
        "",
        f"TMDB's own ceiling at 40 requests/s is "
        f"{result['scaling']['tmdb_ceiling_ids_per_s']:.1f} ids/s with details "
        f"({result['scaling']['points'][-1]['requests_per_id']:.3f} requests per id).",
        "",
        *requests_table(result["requests_per_title"]),
    ]
    return "\n".join(lines)


def _per_id(paired: dict[str, Any]) -> str:
    """Requests per id of the engine and the bare loop in a paired scenario."""
    engine, bare = paired.get("engine_requests_per_id"), paired.get("bare_requests_per_id")
    if engine is None or bare is None:
        return "requests per id not recorded"
    return f"requests per id: engine {engine:.3f}, bare {bare:.3f}"


def requests_table(part: dict[str, Any]) -> list[str]:
    """Scenario 7 case by case: what the fake saw, by route, and the time it took."""
    lines = [
        f"Requests per title ({part['ids_per_case']:,} ids per case, fake and engine at "
        f"{part['tmdb_rate']:g} requests/s; the floor is the fewest requests per title "
        "without knowing each id's kind):",
        "",
        "| Case | Titles | Requests | find | movie by IMDb id | movie by TMDB id "
        "| tv by TMDB id | Requests ÷ title | Floor | Wall (s) | Wall ÷ (requests ÷ 40/s) "
        "| 429s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label, _ in REQUEST_TARGETS:
        case = part["cases"][name]
        routes = case["routes"]
        lines.append(
            f"| {label} | {case['titles']} | {case['requests']} | {routes['find']} | "
            f"{routes['movie_by_imdb']} | {routes['movie_by_id']} | {routes['tv_by_id']} | "
            f"{case['requests_per_title']:.3f} | {case['floor_requests_per_title']:.3f} | "
            f"{case['wall_seconds']:.1f} | {case['wall_over_request_bound']:.3f} | "
            f"{case['throttled_429']} |"
        )
    return lines


def write_markdown(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    block = f"{TABLE_START}\n{markdown_table(result)}\n{TABLE_END}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if TABLE_START in text and TABLE_END in text:
        head, _, rest = text.partition(TABLE_START)
        _, _, tail = rest.partition(TABLE_END)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
