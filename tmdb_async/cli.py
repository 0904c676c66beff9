"""Command line: ``python -m tmdb_async run SOURCE --dest DEST [options]``;
``python -m tmdb_async refresh --dest DEST [--date D] [--since D]`` to fetch again the titles
TMDB changed (:mod:`tmdb_async.jobs.refresh`); ``python -m tmdb_async idmap --dest DEST`` to
rebuild the lake's id map from its records.

Exit codes (also in the README): 0 every id accounted for (a refresh: also when already up
to date); 1 some ids failed after retries (a refresh: or a change list TMDB would not serve);
2 bad usage, bad input, missing/malformed/rejected credentials, or a ``--time-budget`` too
short for one chunk (refused before any I/O when it is not larger than its safety margin,
``DeadlineError`` when the run stopped at it without accounting for any id); 3 source or
destination storage failure; 4 stopped at ``--time-budget`` having done some ids (continue
with the printed ``--offset``); 5 TMDB unreachable (for 5 s no attempt got an answer: DNS,
refused, TLS, connect timeout, or a server that never answers HTTP; the run stopped starting
ids, marked none failed; run it again once TMDB answers); 130 interrupted. Any other exit is
a bug: its traceback is printed with the secret masked.

Every error text (stderr and the ``--json`` line) goes through
:func:`~tmdb_async.errors.error_line`, the one redaction point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import MISSING
from pathlib import Path
from typing import Any, TypeVar

from tmdb_async import log as logsetup
from tmdb_async.credentials import secret_values
from tmdb_async.errors import (
    ExitCode,
    IngestError,
    StorageError,
    UsageError,
    error_line,
    redacted_traceback,
)
from tmdb_async.jobs.deadlines import check_time_budget, require_progress
from tmdb_async.jobs.ingest import Estimate, Summary, estimate, run
from tmdb_async.jobs.progress import Progress
from tmdb_async.jobs.refresh import RefreshSummary, refresh
from tmdb_async.jobs.refresh.run import refresh_estimate
from tmdb_async.jobs.report import lake_report
from tmdb_async.jobs.source import read_csv_ids
from tmdb_async.jobs.status import CONCURRENCY as STATUS_CONCURRENCY
from tmdb_async.jobs.status import LakeStatus, lake_status, status_lines
from tmdb_async.lake import idmap
from tmdb_async.lake.storage import open_s3, open_store, parse_s3, read_source
from tmdb_async.log import LOG_LEVELS, log_level
from tmdb_async.options import BOOL, FLOAT, Choice, ValueType, parse_date
from tmdb_async.settings import REFRESH_SETTINGS, SCHEMA, Settings, Spec, settings_from

logger = logging.getLogger("tmdb_async")
T = TypeVar("T")

#: The settings the command line sets: every one the schema gives a flag.
_CLI_SETTINGS = tuple(spec for spec in SCHEMA if spec.option.flag)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help(spec: Spec) -> str:
    option, notes = spec.option, []
    if option.type is not BOOL and spec.default not in (None, MISSING, ""):
        notes.append(f"default {_shown(spec.default)}")
    if option.env:
        notes.append(f"env {option.env}")
    return f"{option.help} ({'; '.join(notes)})" if notes else option.help


def _metavar(spec: Spec) -> str:
    """The placeholder of an option's value: its choices when its check is a
    :class:`~tmdb_async.settings.Choice`, else the declared one, else the flag's name."""
    check = spec.option.check
    if isinstance(check, Choice):
        return "{" + ",".join(check.choices) + "}"
    flag = spec.option.flag or spec.name
    return spec.option.metavar or flag.lstrip("-").replace("-", "_").upper()


def _add_settings(parser: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """One argparse option per setting with a flag (``only`` those named), from the schema.
    Values stay text and are parsed by :func:`settings_from_args`, so a bad one is a
    one-line UsageError."""
    for spec in _CLI_SETTINGS:
        if only is not None and spec.name not in only:
            continue
        flag = spec.option.flag or ""
        if not flag.startswith("-"):
            parser.add_argument(spec.name, metavar=flag, help=_help(spec))
        elif spec.option.type is BOOL:  # the flag sets the opposite of the default
            parser.add_argument(
                flag, dest=spec.name, action="store_const", const=not spec.default, help=_help(spec)
            )
        else:
            parser.add_argument(flag, dest=spec.name, metavar=_metavar(spec), help=_help(spec))


def _prog() -> str:
    """What the user typed: the installed command, or the module in a checkout."""
    return "tmdb-ingest" if Path(sys.argv[0]).name == "tmdb-ingest" else "python -m tmdb_async"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Enrich IMDb ids from a data-lake CSV with TMDB v3 data, as ≤100-record "
        "JSON files under <dest>/Raw/TMDB/JSON/YYYY/MM/DD/.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run_p = commands.add_parser("run", help="ingest the ids of a CSV (local path or s3://)")
    _add_settings(run_p)
    refresh_p = commands.add_parser(
        "refresh",
        help="fetch again the lake's titles TMDB changed since the last refresh, into the "
        "processing date's folder",
    )
    _add_settings(refresh_p, REFRESH_SETTINGS)
    refresh_p.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="read the change lists from this day (default: the day after the last refresh; "
        "the first time, the newest ingest date)",
    )
    map_p = commands.add_parser(
        "idmap",
        help="rebuild the id map (IMDb id -> TMDB id) from the records under "
        "<dest>/Raw/TMDB/JSON/, for a lake ingested before it existed",
    )
    map_p.add_argument("--dest", help="folder or s3://bucket[/prefix] (env TMDB_DEST)")
    _add_status(commands)
    _add_report(commands)
    for sub in (run_p, refresh_p):
        sub.add_argument(
            "--time-budget",
            metavar="SECONDS",
            help="stop starting new ids after this many seconds and report where to continue "
            "(must leave room for one chunk after its 10%% safety margin, 2..60 s)",
        )
    for sub in (run_p, refresh_p, map_p):
        sub.add_argument("--json", action="store_true", help="print a JSON summary as last line")
        sub.add_argument("--quiet", action="store_true", help="no progress bar, no summary text")
        sub.add_argument(
            "--log-level",
            help=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (default WARNING; env "
            "TMDB_LOG_LEVEL)",
        )
    for sub in (run_p, refresh_p):
        sub.add_argument(
            "--progress",
            action="store_true",
            help="show the progress bar (on stderr) even when stderr is not a terminal",
        )
    return parser


def settings_from_args(
    args: argparse.Namespace, env: dict[str, str] | None = None, **fixed: Any
) -> Settings:
    """CLI options over environment defaults over built-in defaults, validated."""
    env = dict(os.environ) if env is None else env
    given: dict[str, Any] = {}
    for spec in _CLI_SETTINGS:
        value = getattr(args, spec.name, None)
        if value is not None:
            given[spec.name] = _parse(spec.option.type, value, spec.option.flag or spec.name)
    settings = settings_from(given, env, **fixed)
    if not settings.dest:
        raise UsageError("dest: missing; pass --dest or set TMDB_DEST")
    return settings.validate()


def _parse(kind: ValueType, value: Any, flag: str) -> Any:
    """An argument's text through its setting's parser (a flag's value is already typed)."""
    return value if kind.text is None else kind.text(value, flag)


def _time_budget(raw: str | None) -> tuple[float | None, float]:
    """``--time-budget`` and its safety margin (0 without a budget)."""
    if raw is None:
        return None, 0.0
    budget = float(_parse(FLOAT, raw, "--time-budget"))
    return budget, check_time_budget(budget)


class _Bar(Progress):
    """The terminal's bar (tqdm, on stderr): ids done of the total with an ETA, advanced per
    resolved id, with TMDB's request rate and the 429s so far."""

    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar
        self._shown_at = 0.0

    def set_total(self, total: int | None) -> None:
        self.bar.total = total
        super().set_total(total)

    def __call__(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self._shown_at >= self.bar.mininterval:  # the postfix at tqdm's pace
            self._shown_at = now
            snap = self.snapshot()
            self.bar.set_postfix_str(
                f"{snap.rate:.1f} req/s, {snap.throttled} x 429", refresh=False
            )
        self.bar.update(n)

    def changed(self) -> None:
        self.bar.refresh()


def _show_bar(args: argparse.Namespace) -> bool:
    """A bar when asked (``--progress``), else on a terminal unless ``--quiet``. It goes to
    stderr, so ``--json``'s line on stdout stays the only thing there."""
    return bool(args.progress) or (not args.quiet and sys.stderr.isatty())


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[_Bar | None]:
    """A bar on stderr when ``enabled`` (a terminal, neither --quiet nor --json)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # imported here: the Lambda handler never loads it

    # A terminal that reports no size (``script``, some CI terminals) would get no bar at all
    # from tqdm: it gets a fixed one instead.
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        size = os.terminal_size((0, 0))
    shape: dict[str, Any] = {"dynamic_ncols": True}
    if not (size.columns and size.lines):
        shape = {"ncols": 100, "nrows": 24}
    with tqdm(unit=" ids", desc="TMDB", file=sys.stderr, **shape) as bar:
        yield _Bar(bar)


async def _count_ids(settings: Settings) -> int | None:
    """The distinct ids of the source's slice, for the bar's total: a reading pass with the
    run's own reader, beside the run (about 2 s for 124 MB of local file). An S3 source is
    read a second time for it (one more download of the object: seconds to a minute, for a
    run of hours); None when the reading fails (the run itself reports why)."""
    on_s3 = parse_s3(settings.source, "source") is not None
    count = 0
    try:
        async with open_s3(on_s3, 1) as s3:
            ids = read_csv_ids(
                read_source(settings.source, s3),
                where=settings.source,
                offset=settings.offset,
                limit=settings.limit,
            )
            async for _ in ids:
                count += 1
    except IngestError:
        return None
    return count


async def _with_total(bar: _Bar | None, settings: Settings, job: Awaitable[T]) -> T:
    """``job``, while the total is counted beside it: the bar moves from the first answer
    and gets its total (and ETA) once the count is done."""
    if bar is None:
        return await job
    counting = asyncio.create_task(_count_ids(settings))
    counting.add_done_callback(
        lambda task: (
            None
            if task.cancelled() or task.exception() or task.result() is None
            else bar.set_total(task.result())
        )
    )
    try:
        return await job
    finally:
        counting.cancel()


def _print_summary(summary: Summary, offset: int = 0) -> None:
    print(_summary_line(summary, offset), file=sys.stderr)
    if summary.rewritten:
        print(
            f"{summary.rewritten} ids were rewritten from the folder's files of the other "
            "format (--replace; no request)",
            file=sys.stderr,
        )
    if summary.held:
        print(
            f"{summary.held} of the failed kept the answer TMDB gave them before "
            "(a failure never replaces one; listed in the manifest's held_failures)",
            file=sys.stderr,
        )
    if summary.files:
        print(f"data files under {summary.files[0].rsplit('/', 1)[0]}/", file=sys.stderr)
    if summary.manifest:
        print(f"manifest: {summary.manifest}", file=sys.stderr)
    if summary.next_offset is not None:
        print(f"continue with: {continuation(summary)}", file=sys.stderr)


def _summary_line(summary: Summary, offset: int) -> str:
    """What the run did, in one line: what it wrote, and what it kept, skipped and replaced;
    plainly so when there was nothing to do."""
    n, where = summary.unique_ids, summary.date
    took = f"{summary.requests} requests ({summary.throttled_429} x 429) in {summary.seconds:.1f}s"
    if n == 0 and offset and summary.source_ids is not None and offset >= summary.source_ids:
        return (
            f"{summary.status}: --offset {offset} is past the end: {summary.source} has "
            f"{summary.source_ids} distinct ids; nothing to fetch"
        )
    if n and summary.kept + summary.skipped == n and summary.status == "ok":
        if summary.kept == n:
            return f"{summary.status}: {n} distinct ids: all {n} already in {where} (kept); " + (
                "nothing to fetch"
            )
        parts = [f"{summary.kept} already in {where} (kept)"] if summary.kept else []
        if summary.skipped:
            parts.append(f"{summary.skipped} with a record in an earlier folder (skipped)")
        return f"{summary.status}: {n} distinct ids: {', '.join(parts)}; nothing to fetch"
    return (
        f"{summary.status}: {n} distinct ids -> {summary.records} records in "
        f"{len(summary.files)} files; {summary.not_found} not found, {summary.invalid} invalid, "
        f"{summary.failed} failed; {summary.kept} kept, {summary.skipped} skipped, "
        f"{summary.replaced} replaced; {took}"
    )


def _print_estimate(found: Estimate) -> None:
    """A dry run's answer: what the run would keep, fetch and replace, and its cost."""
    low, high = found.requests
    slow, shigh = found.seconds
    if found.note:
        print(f"dry run: {found.note}", file=sys.stderr)
        return
    listed = f" but the change lists ({found.change_list_requests} requests)"
    lines = [
        f"dry run: nothing sent to TMDB{listed if found.change_lists else ''}, nothing written",
        f"{found.unique_ids} {'titles to refresh' if found.change_lists else 'distinct ids'} "
        f"for {found.date}"
        + ("" if found.source_ids is None else f" ({found.source} has {found.source_ids})"),
        f"  kept: {found.kept} (already in {found.date} from an equivalent run)",
        f"  skipped: {found.skipped} (--skip-existing: a record in an earlier folder)",
        f"  invalid: {found.invalid} (never sent)",
        f"  to fetch: {found.to_fetch}: {found.by_map} the id map knows (1 request each), "
        f"{found.unknown} it does not ({_span(1, found.unknown_high)} requests each)",
    ]
    if found.rewritten:
        lines.append(
            f"  rewritten: {found.rewritten} (with --replace: moved into {found.format} "
            "files, no request)"
        )
    if found.replaced:
        other = f", {found.replaced_other} of them fetched with other settings" * bool(
            found.replaced_other
        )
        lines.append(f"  replaced: {found.replaced} of those fetched{other}")
    lines.append(
        f"estimate: {_span(low, high)} requests, ~{_span(slow, shigh)} s at "
        f"{found.rate:g} requests/s"
    )
    if found.refused:
        lines.append(f"the run would stop before its first request: {found.refused}")
    print("\n".join(lines), file=sys.stderr)


def _span(low: float, high: float) -> str:
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


_SLICE_FLAGS = ("--offset", "--limit", "--date")


def _again(argv: Sequence[str], tail: str) -> str:
    """The exact command that continues a stopped run: the one given, with ``tail`` (the
    slice and date of :func:`continuation`) instead of its own."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _SLICE_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in _SLICE_FLAGS)):
            continue
        kept.append(arg)
    return f"{_prog()} {shlex.join(kept)} {tail}"


def continuation(summary: Summary) -> str:
    """The options that continue a stopped run: every slice argument, so the continuation
    covers exactly the rest of the slice (not the rest of the file), and its date."""
    limit = "" if summary.next_limit is None else f" --limit {summary.next_limit}"
    return f"--offset {summary.next_offset}{limit} --date {summary.date}"


_DEADLINE_HINT = "give a longer --time-budget, or a smaller --chunk-size"


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM outside the event loop: the same as Ctrl-C (``KeyboardInterrupt``)."""
    raise KeyboardInterrupt


def _serve(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with SIGTERM a clean interruption before, during and after the loop:
    the loop's handler (:func:`_cancel_on_sigterm`) resets SIGTERM to its default (die at
    once, printing nothing) when the loop closes, so it is put back to :func:`_interrupt`."""
    try:
        return asyncio.run(main)
    finally:
        _catch_sigterm()


def _catch_sigterm() -> None:
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _interrupt)


def _cancel_on_sigterm(budget: float | None) -> Callable[[], float] | None:
    """Turn SIGTERM into a clean cancellation like Ctrl-C; the clock of ``budget``."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    if budget is None:
        return None
    end = time.monotonic() + budget
    return lambda: end - time.monotonic()


async def _run_cancellable(
    settings: Settings,
    budget: float | None,
    margin: float,
    progress: _Bar | None,
    report: Callable[[Summary], None] | None = None,
) -> Summary:
    remaining = _cancel_on_sigterm(budget)
    job = run(settings, remaining=remaining, safety_margin=margin, progress=progress, report=report)
    return await _with_total(progress, settings, job)


def _fail(exc: BaseException, code: int, as_json: bool, so_far: Summary | None = None) -> int:
    """One redacted line on stderr (and as the --json line, with the counts the run had
    reached when it had started)."""
    text = error_line(exc)
    print(f"error: {text}", file=sys.stderr)
    if as_json:
        counts = {} if so_far is None else so_far.as_dict()
        print(json.dumps({**counts, "status": "error", "error": text, "exit_code": code}))
    return code


def _interrupted(
    as_json: bool, argv: Sequence[str], so_far: Summary | None, tail: str | None = None
) -> int:
    """Ctrl-C or SIGTERM: where the manifest is and the command that continues, on stderr;
    the counts so far in the --json line. ``tail``: what continues it (a run's is its
    summary's :func:`continuation`)."""
    lines = ["interrupted: finished chunks are written"]
    if so_far is not None and so_far.manifest:
        lines.append(f"manifest: {so_far.manifest}")
    if tail is None and so_far is not None and so_far.next_offset is not None:
        tail = continuation(so_far)
    if tail is not None:
        lines.append(f"continue with: {_again(argv, tail)}")
    text = "; ".join(lines)
    print("\n".join(lines), file=sys.stderr)
    if as_json:  # the JSON line on every exit: a caller parses the last line
        counts = {} if so_far is None else so_far.as_dict()
        code = ExitCode.INTERRUPTED
        print(json.dumps({**counts, "status": "interrupted", "error": text, "exit_code": code}))
    return int(ExitCode.INTERRUPTED)


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = settings_from_args(args, env)
    if settings.dry_run:
        found = _serve(estimate(settings))
        if not args.quiet:
            _print_estimate(found)
        if args.json:
            print(json.dumps(found.as_dict(), ensure_ascii=False))
        return 0
    budget, margin = _time_budget(args.time_budget)
    show_bar = _show_bar(args)
    reached: list[Summary] = []
    try:
        with _progress(show_bar) as progress:
            summary = _serve(_run_cancellable(settings, budget, margin, progress, reached.append))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return _interrupted(args.json, getattr(args, "argv", ["run"]), _last(reached))
    except IngestError as exc:
        return _fail(exc, int(exc.exit_code), args.json, _last(reached))
    require_progress(summary, margin, _DEADLINE_HINT)
    if not args.quiet:
        _print_summary(summary, settings.offset)
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False))
    return int(summary.exit_code)


def _last(reached: Sequence[Summary]) -> Summary | None:
    return reached[-1] if reached else None


def _refresh(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = settings_from_args(args, env, source="refresh")
    since = None if args.since is None else parse_date(args.since, "--since")
    if settings.dry_run:
        found = _serve(refresh_estimate(settings, since=since))
        if not args.quiet:
            _print_estimate(found)
        if args.json:
            print(json.dumps(found.as_dict(), ensure_ascii=False))
        return 0
    budget, margin = _time_budget(args.time_budget)
    show_bar = _show_bar(args)

    reached: list[Summary] = []

    async def go(progress: Any) -> RefreshSummary:
        remaining = _cancel_on_sigterm(budget)
        return await refresh(
            settings,
            since=since,
            remaining=remaining,
            safety_margin=margin,
            progress=progress,
            report=reached.append,
        )

    try:
        with _progress(show_bar) as progress:
            summary = _serve(go(progress))
    except (KeyboardInterrupt, asyncio.CancelledError):
        date = settings.date or dt.datetime.now(dt.UTC).date()
        tail = f"--date {date.isoformat()}"  # the same date continues its saved plan
        return _interrupted(args.json, getattr(args, "argv", ["refresh"]), _last(reached), tail)
    if not args.quiet:
        _print_refresh(summary)
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False))
    return int(summary.exit_code)


def _print_refresh(summary: RefreshSummary) -> None:
    if summary.window is None:
        print(
            f"up to date: changes refreshed through {summary.refreshed_through}; the next "
            "refresh reads the days after it",
            file=sys.stderr,
        )
        return
    window = summary.window
    print(
        f"{summary.status}: changes of {window['start']}..{window['end']}: "
        f"{summary.changed['movie']} movies, {summary.changed['tv']} series, "
        f"{summary.in_lake} in the lake -> {summary.records} records in "
        f"{len(summary.files)} files, {summary.deleted} deleted, {summary.not_found} not "
        f"found, {summary.failed} failed, {summary.kept} kept; {summary.requests} requests "
        f"({summary.list_pages} list pages) in {summary.seconds:.1f}s",
        file=sys.stderr,
    )
    if summary.mode is not None:
        print(f"way: {summary.mode} ({summary.reason})", file=sys.stderr)
    for cut in summary.truncated:
        print(
            f"warning: the {cut['kind']} changes of {cut['start']}..{cut['end']} stop at page "
            f"500 of {cut['total_pages']}: titles changed past it were not refreshed",
            file=sys.stderr,
        )
    if summary.odd_items:
        print(
            f"warning: {summary.odd_items} change-list items had no integer id and name no "
            "title (counted as odd_items)",
            file=sys.stderr,
        )
    if summary.status == "incomplete":
        print(f"continue with: refresh --date {summary.date}", file=sys.stderr)
    elif summary.status == "failed_ids":
        print(
            f"{summary.failed} titles failed: they are carried, the next refresh asks them "
            "again (listed as failed in the folder's _sidecars/, or in the manifest's "
            "held_failures)",
            file=sys.stderr,
        )


def _idmap(args: argparse.Namespace, env: dict[str, str]) -> int:
    dest = _dest(args, env)

    async def rebuild_map() -> tuple[idmap.Rebuilt, str]:
        _cancel_on_sigterm(None)
        async with open_store(dest) as store:
            return await idmap.rebuild(store), store.url(idmap.BASE_KEY)

    rebuilt, where = _serve(rebuild_map())
    if not args.quiet:
        print(
            f"ok: {rebuilt.titles} titles from {rebuilt.files} data files -> {where}",
            file=sys.stderr,
        )
    if args.json:
        print(
            json.dumps(
                {"status": "ok", "files": rebuilt.files, "titles": rebuilt.titles, "map": where}
            )
        )
    return 0


def _lake_command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand that reads a lake (``status``, ``report``): ``--dest`` and the output
    options every command shares."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    sub.add_argument("--dest", help="folder or s3://bucket[/prefix] (env TMDB_DEST)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--quiet", action="store_true", help="print nothing but errors")
    sub.add_argument(
        "--log-level",
        help=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (default WARNING; env "
        "TMDB_LOG_LEVEL)",
    )
    return sub


def _dest(args: argparse.Namespace, env: dict[str, str]) -> str:
    dest: str = args.dest or env.get("TMDB_DEST", "")
    if not dest:
        raise UsageError("dest: missing; pass --dest or set TMDB_DEST")
    return dest


def _add_status(commands: Any) -> None:
    """The ``status`` subcommand: what the lake holds (:mod:`tmdb_async.jobs.status`)."""
    sub = _lake_command(
        commands,
        "status",
        "what the lake holds: per date folder the ids by outcome, the data files and "
        "the runs that wrote them; runs in progress, the refresh state, the id map's size "
        "(reads ledgers and manifests, never data files; writes nothing)",
    )
    sub.add_argument("--date", metavar="YYYY-MM-DD", help="this date folder only")
    sub.add_argument("--failed", action="store_true", help="list the failed ids and why")


def _status(args: argparse.Namespace, env: dict[str, str]) -> int:
    dest = _dest(args, env)
    date = None if args.date is None else parse_date(args.date, "--date")

    async def read() -> LakeStatus:
        _cancel_on_sigterm(None)
        async with open_store(dest, pool=STATUS_CONCURRENCY) as store:
            return await lake_status(store, date=date, failed=args.failed)

    found = _serve(read())
    if args.json:
        print(json.dumps(found.as_dict(), ensure_ascii=False))
    elif not args.quiet:
        print("\n".join(status_lines(found)))
    return 0


def _add_report(commands: Any) -> None:
    """The ``report`` subcommand: the lake as one HTML page (:mod:`tmdb_async.jobs.report`)."""
    sub = _lake_command(
        commands,
        "report",
        "what the lake holds as one self-contained HTML page (outcomes per date folder, "
        "each run's requests and 429s over time, the refresh history, the failures); reads "
        "what status reads, writes only --out",
    )
    sub.add_argument("--out", default="report.html", help="the page to write (report.html)")


def _report(args: argparse.Namespace, env: dict[str, str]) -> int:
    dest = _dest(args, env)

    async def read() -> str:
        _cancel_on_sigterm(None)
        async with open_store(dest, pool=STATUS_CONCURRENCY) as store:
            return await lake_report(store)

    page = _serve(read()).encode("utf-8")
    out = Path(args.out)
    try:
        out.write_bytes(page)
    except OSError as exc:
        raise StorageError(f"{out}: not written ({exc.strerror or exc})") from None
    if args.json:
        print(json.dumps({"status": "ok", "out": str(out), "bytes": len(page)}))
    elif not args.quiet:
        print(f"report: {out} ({len(page):,} bytes)")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, dict[str, str]], int]] = {
    "run": _run,
    "refresh": _refresh,
    "idmap": _idmap,
    "status": _status,
    "report": _report,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv  # what was typed: a stopped run prints it back with where to continue
    env = dict(os.environ)
    try:
        _catch_sigterm()
        logsetup.configure(log_level(args.log_level, env, "WARNING"), "text", secret_values(env))
        return _COMMANDS[args.command](args, env)
    except IngestError as exc:
        return _fail(exc, int(exc.exit_code), args.json)
    except (KeyboardInterrupt, asyncio.CancelledError):
        text = "interrupted: finished chunks are written; see the manifest"
        print(text, file=sys.stderr)
        if args.json:  # the JSON line on every exit: a caller parses the last line
            line = {"status": "interrupted", "error": text, "exit_code": ExitCode.INTERRUPTED}
            print(json.dumps(line))
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: its traceback, with the secret masked
        print(redacted_traceback(exc), file=sys.stderr, end="")
        return _fail(exc, 1, args.json)
