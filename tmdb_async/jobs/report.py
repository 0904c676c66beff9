"""``tmdb-ingest report``: what the lake holds, as one self-contained HTML page.

Built on :mod:`tmdb_async.jobs.status` (the same reading of ledgers, manifests and state files,
never a data file) plus each run's ``timeline`` from its manifest (requests, 429s and ids per
second: :class:`tmdb_async.tmdb.client.Timeline`). The page has no script and loads nothing:
its CSS is inline and its charts are SVG drawn here, so it opens from a file, offline, and can
be mailed or attached to a ticket as it is.

:func:`render_report` is pure (status and timelines in, HTML out) and escapes every value it
prints: titles, paths, sources and failure reasons are data, never markup. Failure reasons
were redacted by the run that wrote them; the settings shown are the manifests' public ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Final

from tmdb_async.jobs.status import (
    OUTCOMES,
    FailedId,
    FolderStatus,
    LakeStatus,
    RunStatus,
    lake_status,
)
from tmdb_async.lake.storage import Store
from tmdb_async.tmdb.client import decode_counts

COLOURS: Final = {
    "record": "#2f855a",
    "not_found": "#a0aec0",
    "invalid": "#d69e2e",
    "failed": "#c53030",
    "deleted": "#6b46c1",
}
"""Each outcome's colour, in the bars, legends and table headers alike."""
_REQUESTS, _IDS, _THROTTLED = "#2b6cb0", "#2f855a", "#c53030"


@dataclass(frozen=True, slots=True)
class RunTimeline:
    """A run's ``timeline`` as its manifest holds it: ``t0`` (UTC), ``step`` (seconds per
    bucket) and the counts per bucket of ``requests``, ``throttled`` (429s) and ``ids``."""

    t0: str
    step: int
    requests: tuple[int, ...]
    throttled: tuple[int, ...]
    ids: tuple[int, ...]

    @classmethod
    def of(cls, body: Any) -> RunTimeline | None:
        """From a manifest's ``timeline``; ``None`` if absent (older manifests) or damaged."""
        if not isinstance(body, dict):
            return None
        try:
            step = int(body["step"])
            series = [tuple(decode_counts(str(body[n]))) for n in ("requests", "throttled", "ids")]
        except (KeyError, TypeError, ValueError):
            return None
        if step < 1:
            return None
        return cls(str(body.get("t0", "")), step, *series)

    @property
    def seconds(self) -> int:
        return self.step * max(len(self.requests), len(self.throttled), len(self.ids), 1)


async def read_timelines(store: Store, found: LakeStatus) -> dict[str, RunTimeline]:
    """Each run's timeline, keyed by its manifest's location (:attr:`RunStatus.manifest`);
    runs whose manifest has none (written before timelines existed, or still running) are
    left out."""
    root = store.url("x")[:-1]  # the store's URL of a key is this prefix and the key
    keys = {
        run.manifest: run.manifest[len(root) :]
        for folder in found.folders
        for run in folder.runs
        if run.manifest.startswith(root)
    }
    slots = asyncio.Semaphore(16)

    async def one(key: str) -> RunTimeline | None:
        async with slots:
            raw = await store.get(key)
        try:
            body = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return RunTimeline.of(body.get("timeline")) if isinstance(body, dict) else None

    read = await asyncio.gather(*(one(key) for key in keys.values()))
    return {url: line for url, line in zip(keys, read, strict=True) if line is not None}


async def lake_report(store: Store) -> str:
    """The report of the lake in ``store`` (a :class:`~tmdb_async.errors.StorageError` when
    there is none)."""
    found = await lake_status(store, failed=True)
    return render_report(found, await read_timelines(store, found))


def render_report(found: LakeStatus, timelines: Mapping[str, RunTimeline]) -> str:
    """The page: totals, outcomes per date folder (chart and table), each run with its
    timeline, runs in progress, the refresh history, the id map and the failures."""
    runs = [(folder, run) for folder in found.folders for run in folder.runs]
    failures = [(folder, f) for folder in found.folders for f in folder.failed or ()]
    body = [
        "<header>",
        "<h1>tmdb-ingest report</h1>",
        f"<p class=sub>{_e(found.dest)} &middot; read {_e(found.read_at)}</p>",
        "</header>",
        _cards(found, len(runs), len(failures)),
        _section("Outcomes per date folder", _folders(found)),
        _section(f"Runs ({len(runs)})", _runs(runs, timelines)),
        _section("Runs in progress or interrupted", _pins(found)),
        _section("Refresh", _refresh(found, runs)),
        _section("Id map", _idmap(found)),
        _section(f"Failures ({len(failures)})", _failures(failures)),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        '<meta name=viewport content="width=device-width, initial-scale=1">\n'
        f"<title>tmdb-ingest report: {_e(found.dest)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _label(outcome: str) -> str:
    return outcome.replace("_", " ")


def _section(title: str, content: str) -> str:
    return f"<section>\n<h2>{_e(title)}</h2>\n{content}\n</section>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """A table of already escaped cells; ``numeric`` columns align right."""
    cls = [" class=num" if i in numeric else "" for i in range(len(head))]
    out = ["<table>", "<thead><tr>"]
    out += [f"<th{cls[i]}>{cell}</th>" for i, cell in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls[i]}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _swatch(outcome: str) -> str:
    return f'<i class=sw style="background:{COLOURS[outcome]}"></i>{_e(_label(outcome))}'


def _cards(found: LakeStatus, runs: int, failures: int) -> str:
    totals = found.totals
    cards = [
        ("date folders", _n(len(found.folders)), ""),
        ("ids (per folder)", _n(totals.total), ""),
        *((_label(n), _n(getattr(totals, n)), COLOURS[n]) for n in OUTCOMES),
        ("runs", _n(runs), ""),
        ("id map titles", _n(found.idmap.titles), ""),
    ]
    out = ["<div class=cards>"]
    for title, value, colour in cards:
        style = f' style="border-top-color:{colour}"' if colour else ""
        out.append(f"<div class=card{style}><b>{value}</b><span>{_e(title)}</span></div>")
    out.append("</div>")
    if failures:
        ids = "id" if failures == 1 else "ids"
        out.append(f"<p class=warn>{_n(failures)} failed {ids}: see the failures table.</p>")
    return "".join(out)


def _folders(found: LakeStatus) -> str:
    if not found.folders:
        return "<p class=muted>No date folder yet.</p>"
    head = ["date", "ids", *(_swatch(n) for n in OUTCOMES), "files", "runs", "path"]
    rows = []
    for folder in found.folders:
        files = ", ".join(f"{f.files} {f.format}" for f in folder.formats) or "-"
        rows.append(
            [
                _e(folder.date),
                _n(folder.ids.total),
                *(_n(getattr(folder.ids, n)) for n in OUTCOMES),
                _e(files),
                _n(len(folder.runs)),
                f"<code>{_e(folder.path)}</code>",
            ]
        )
    if len(found.folders) > 1:
        totals = found.totals
        rows.append(
            [
                "<b>all</b>",
                f"<b>{_n(totals.total)}</b>",
                *(f"<b>{_n(getattr(totals, n))}</b>" for n in OUTCOMES),
                "",
                "",
                "",
            ]
        )
    legend = " ".join(f"<span class=key>{_swatch(n)}</span>" for n in OUTCOMES)
    return (
        _stacked_bars(found.folders)
        + f"<p class=legend>{legend}</p>"
        + _table(head, rows, {1, 2, 3, 4, 5, 6, 8})
    )


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``: 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= top:
        power *= 10
    while power > top:
        power /= 10
    for factor in (1, 2, 5, 10):
        if factor * power >= top:
            return factor * power
    return 10 * power


def _ticks(top: float) -> list[float]:
    """Round steps from 0 to a :func:`_nice` ``top``: fifths of 1 and 5, quarters of 2."""
    lead = f"{top:e}"[0]
    n = 4 if lead == "2" else 5
    return [top * i / n for i in range(n + 1)]


def _fmt_tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _axes(
    width: int, height: int, left: int, bottom: int, top: float, unit: str, pad: int = 10
) -> list[str]:
    """Horizontal grid lines and their labels, from 0 to ``top`` (``pad``: room above)."""
    out = []
    plot = height - bottom - pad
    for tick in _ticks(top):
        y = height - bottom - plot * tick / top
        out.append(
            f'<line x1={left} x2={width - 10} y1="{y:.1f}" y2="{y:.1f}" class=grid />'
            f'<text x={left - 6} y="{y + 4:.1f}" class=ytick>{_e(_fmt_tick(tick))}</text>'
        )
    out.append(
        f'<text x=12 y="{(height - bottom) / 2:.0f}" class=unit '
        f'transform="rotate(-90 12 {(height - bottom) / 2:.0f})">{_e(unit)}</text>'
    )
    return out


def _stacked_bars(folders: Sequence[FolderStatus]) -> str:
    """Ids of each folder, stacked by outcome; every bar has a tooltip with its counts."""
    width, height, left, bottom = 1000, 260, 64, 42
    top = _nice(max(f.ids.total for f in folders))
    plot_w, plot_h = width - left - 10, height - bottom - 10
    slot = plot_w / len(folders)
    bar = max(2.0, min(80.0, slot * 0.7))
    every = max(1, int(70 // slot) + (1 if 70 % slot else 0)) if slot < 70 else 1
    out = [
        f'<svg viewBox="0 0 {width} {height}" class=chart role=img '
        'aria-label="ids per date folder by outcome">',
        *_axes(width, height, left, bottom, top, "ids"),
    ]
    for i, folder in enumerate(folders):
        x = left + slot * i + (slot - bar) / 2
        y = height - bottom
        tip = f"{folder.date}: {folder.ids.total} ids; " + ", ".join(
            f"{_label(n)} {getattr(folder.ids, n)}" for n in OUTCOMES
        )
        out.append(f"<g><title>{_e(tip)}</title>")
        for outcome in OUTCOMES:
            count = getattr(folder.ids, outcome)
            if not count:
                continue
            h = max(1.5, plot_h * count / top)  # a few ids among many still show
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[outcome]}" />'
            )
        out.append("</g>")
        if i % every == 0:
            out.append(
                f'<text x="{x + bar / 2:.1f}" y={height - bottom + 18} class=xtick>'
                f"{_e(folder.date)}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _runs(runs: Sequence[tuple[FolderStatus, RunStatus]], lines: Mapping[str, RunTimeline]) -> str:
    if not runs:
        return "<p class=muted>No run has written this lake.</p>"
    out = [
        '<p class=legend><span class=key><i class=sw style="background:'
        f'{_REQUESTS}"></i>requests/s</span> <span class=key><i class=sw style="background:'
        f'{_IDS}"></i>ids done/s</span> <span class=key><i class=sw style="background:'
        f'{_THROTTLED}"></i>429 answers (per bucket)</span></p>'
    ]
    for folder, run in runs:
        tmdb = run.counts
        line = lines.get(run.manifest)
        requests = sum(line.requests) if line else None
        throttled = sum(line.throttled) if line else None
        seconds = line.seconds if line else None
        facts = [f"folder {_e(folder.date)}", f"{_e(run.started_at or '?')} &rarr; "]
        facts[-1] += _e(run.finished_at or "not finished")
        if requests is not None and seconds:
            facts.append(f"{_n(requests)} requests, {_n(throttled or 0)} &times; 429")
            facts.append(f"{_n(requests / seconds)} requests/s over {_n(seconds)} s")
        counts = ", ".join(
            f"{_e(k.replace('_', ' '))} {_n(v)}" for k, v in tmdb.items() if v and k != "rows_read"
        )
        shown = {k: run.settings[k] for k in _SETTINGS if run.settings.get(k) is not None}
        settings = " ".join(f"{_e(k)}={_e(_value(v))}" for k, v in shown.items())
        out.append(
            f"<article class=run><h3><span class='badge {_e(run.outcome)}'>{_e(run.outcome)}"
            f"</span> {_e(run.source)} <small>{_e(run.run)}</small></h3>"
            f"<p class=facts>{' &middot; '.join(facts)}</p>"
            + (f"<p class=facts>{counts}</p>" if counts else "")
            + (f"<p class=facts><code>{settings}</code></p>" if settings else "")
            + (f"<p class=error>error: {_e(run.error)}</p>" if run.error else "")
            + (
                _timeline_chart(line)
                if line
                else "<p class=muted>No timeline: the manifest predates timelines, or the run "
                "has not finished.</p>"
            )
            + f"<p class=path><code>{_e(run.manifest)}</code></p></article>"
        )
    return "\n".join(out)


#: The settings a run shows (the manifest has them all).
_SETTINGS = ("kind", "detail", "language", "append_to_response", "format", "offset", "limit")


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def _timeline_chart(line: RunTimeline) -> str:
    """Requests and ids per second as lines, 429s as red bars, over the run's seconds."""
    width, height, left, bottom, pad = 1000, 190, 64, 30, 24
    points = max(len(line.requests), len(line.ids), len(line.throttled), 1)
    rate_req = [v / line.step for v in line.requests]
    rate_ids = [v / line.step for v in line.ids]
    top = _nice(max([*rate_req, *rate_ids, 1.0]))
    plot_w, plot_h = width - left - 10, height - bottom - pad
    dx = plot_w / points
    base = height - bottom

    def path(rates: Sequence[float]) -> str:
        coords = []
        for i, rate in enumerate(rates):
            y = base - plot_h * rate / top
            coords.append(f"{left + dx * i:.1f},{y:.1f} {left + dx * (i + 1):.1f},{y:.1f}")
        return " ".join(coords)

    out = [
        f'<svg viewBox="0 0 {width} {height}" class="chart small" role=img '
        'aria-label="requests, ids and 429s per second">',
        *_axes(width, height, left, bottom, top, "per second", pad),
    ]
    most = max(line.throttled, default=0)
    for i, count in enumerate(line.throttled):
        if count:
            h = max(3.0, plot_h * 0.12 * count / most)  # a mark at the foot, under the lines
            bar = max(dx * 0.5, 2.0)
            out.append(
                f'<rect x="{left + dx * i + (dx - bar) / 2:.1f}" y="{base - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{_THROTTLED}" opacity=".8"><title>'
                f"{_e(f'{count} × 429 at +{i * line.step} s')}</title></rect>"
            )
    if rate_req:
        out.append(f'<polyline points="{path(rate_req)}" class=line stroke="{_REQUESTS}" />')
    if rate_ids:
        out.append(f'<polyline points="{path(rate_ids)}" class=line stroke="{_IDS}" />')
    total = line.seconds
    ticks = sorted({round(total * i / 5) for i in range(6)})
    for tick in ticks:
        x = left + plot_w * tick / total
        anchor = " style=text-anchor:end" if tick == total else ""
        out.append(
            f'<text x="{x:.1f}" y={height - 10} class=xtick{anchor}>+{_e(_dur(tick))}</text>'
        )
    out.append(
        f"<text x={width - 10} y=14 class=corner>from {_e(line.t0)}, "
        f"{line.step} s per point</text></svg>"
    )
    return "".join(out)


def _dur(seconds: float) -> str:
    s = round(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 and s < 600 else "")
    return f"{s // 3600} h {s % 3600 // 60:02d}"


def _pins(found: LakeStatus) -> str:
    if not found.in_progress:
        return "<p class=muted>None.</p>"
    rows = [
        [
            f"<span class='badge {_e(p.state)}'>{_e(p.state)}</span>",
            _e(p.run),
            _e(p.source),
            _e(p.date),
            _e(f"{p.start}..{'end' if p.end is None else p.end}"),
            _e(p.why),
            _e(p.saved_at or "?"),
        ]
        for p in found.in_progress
    ]
    return _table(["state", "run", "source", "into", "positions owed", "why", "saved"], rows, set())


def _refresh(found: LakeStatus, runs: Sequence[tuple[FolderStatus, RunStatus]]) -> str:
    state = found.refresh
    if state is None:
        head = "<p class=muted>Never run.</p>"
    elif state.error:
        head = f"<p class=error>{_e(state.error)}</p>"
    else:
        carried = ", ".join(state.carried) if state.carried else "none"
        head = (
            f"<p>Changes refreshed through <b>{_e(state.refreshed_through)}</b>. "
            f"Carried failures (asked again by the next refresh): {_e(carried)}.</p>"
        )
    rows = []
    for folder, run in runs:
        if not run.source.startswith("refresh "):
            continue
        c = run.counts
        rows.append(
            [
                _e(folder.date),
                _e(run.source.removeprefix("refresh ")),
                f"<span class='badge {_e(run.outcome)}'>{_e(run.outcome)}</span>",
                *(_n(int(c.get(k, 0))) for k in ("unique_ids", "records", "deleted", "failed")),
                _e(_value(run.settings.get("kind", "?"))),
                _e(run.started_at or "?"),
            ]
        )
    if not rows:
        return head
    head_cells = ["folder", "window", "outcome", "titles", "records", "deleted", "failed"]
    return head + _table([*head_cells, "kind", "started"], rows, {3, 4, 5, 6})


def _idmap(found: LakeStatus) -> str:
    m = found.idmap
    text = (
        f"<p>{_n(m.titles)} titles known ({_n(m.deleted)} deleted by TMDB); compacted base "
        f"{_n(m.base_titles)}, {_n(m.segments)} segments not merged yet.</p>"
    )
    return text + "".join(f"<p class=error>damaged, skipped: {_e(d)}</p>" for d in m.damaged)


def _failures(failures: Sequence[tuple[FolderStatus, FailedId]]) -> str:
    if not failures:
        return "<p class=muted>No failed id.</p>"
    rows = [
        [
            f"<code class=nw>{_e(f.imdb_id)}</code>",
            _e(f.reason),
            "?" if f.attempts is None else _n(f.attempts),
            f"<span class=nw>{_e(folder.date)}</span>",
            f"<code>{_e(f.file)}</code>",
        ]
        for folder, f in failures
    ]
    return _table(["imdb_id", "reason", "attempts", "folder", "sidecar"], rows, {2})


_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1a202c;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px}
header h1{margin:0;font-size:26px}
.sub{margin:4px 0 18px;color:#4a5568;word-break:break-all}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:0 0 4px;word-break:break-all}
h3 small{color:#718096;font-weight:normal}
section{background:#fff;border-radius:8px;padding:18px 20px;margin:18px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;padding:10px 12px;border-top:4px solid #cbd5e0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card b{display:block;font-size:22px}
.card span{color:#4a5568;font-size:12px}
.warn{color:#9b2c2c;font-weight:600}
.muted{color:#718096}
.nw{white-space:nowrap}
.error{color:#9b2c2c}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}
td{word-break:break-word}
thead th{background:#edf2f7;font-weight:600;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#2d3748}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;
vertical-align:baseline}
.legend .key{margin-right:14px;white-space:nowrap}
.chart{width:100%;height:auto;display:block}
.chart text{font-size:12px;fill:#4a5568}
.chart .ytick{text-anchor:end}
.chart .xtick{text-anchor:middle}
.chart .unit{text-anchor:middle;font-size:11px}
.chart .corner{text-anchor:end;font-size:11px}
.chart .grid{stroke:#e2e8f0;stroke-width:1}
.chart .line{fill:none;stroke-width:2;stroke-linejoin:round}
article.run{border:1px solid #e2e8f0;border-radius:6px;padding:12px 14px;margin:12px 0}
.facts{margin:2px 0;color:#2d3748}
.path{margin:4px 0 0;color:#718096}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;
background:#e2e8f0;color:#2d3748}
.badge.ok{background:#c6f6d5;color:#22543d}
.badge.failed_ids,.badge.interrupted{background:#feebc8;color:#7b341e}
.badge.error{background:#fed7d7;color:#822727}
.badge.running,.badge.incomplete{background:#bee3f8;color:#2a4365}
"""
