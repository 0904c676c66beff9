"""Command line: ``python -m tmdb_async run SOURCE --dest DEST [options]``.

Exit codes (also in the README): 0 every id accounted for; 1 some ids failed after retries;
2 bad usage, bad input, missing/malformed/rejected credentials, or a ``--time-budget`` too
short for one chunk (refused before any I/O when it is not larger than its safety margin,
``DeadlineError`` when the run stopped at it without accounting for any id); 3 source or
destination storage failure; 4 stopped at ``--time-budget`` having done some ids (continue
with the printed ``--offset``); 130 interrupted. Any other exit is a bug: its traceback is
printed with the secret masked.

Every error text (stderr and the ``--json`` line) goes through
:func:`~tmdb_async.errors.describe_error`, the one redaction point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import log as logsetup
from .config import (
    DETAILS,
    FORMATS,
    KINDS,
    MAX_CHUNK,
    Credentials,
    Settings,
    check_time_budget,
    env_defaults,
    log_level,
    parse_append,
    parse_date,
    require_progress,
    secret_values,
)
from .errors import ExitCode, IngestError, UsageError, describe_error, redacted_traceback
from .pipeline import Summary, run

logger = logging.getLogger("tmdb_async")

_OPTION_FIELDS = {
    "kind": "kind",
    "detail": "detail",
    "language": "language",
    "append": "append_to_response",
    "date": "date",
    "offset": "offset",
    "limit": "limit",
    "chunk_size": "chunk_size",
    "format": "output_format",
    "concurrency": "concurrency",
    "rate": "rate",
    "max_attempts": "max_attempts",
    "timeout": "request_timeout",
    "tmdb_url": "tmdb_url",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tmdb_async",
        description="Enrich IMDb ids from a data-lake CSV with TMDB v3 data, as ≤100-record "
        "JSON files under <dest>/Raw/TMDB/JSON/YYYY/MM/DD/.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run_p = commands.add_parser("run", help="ingest the ids of a CSV (local path or s3://)")
    run_p.add_argument("source", help="CSV path or s3://bucket/key ('|', ',', ';' or tab)")
    run_p.add_argument("--dest", help="local folder or s3://bucket[/prefix] (env TMDB_DEST)")
    run_p.add_argument("--kind", choices=KINDS, help="movie, tv or auto (default auto)")
    run_p.add_argument(
        "--detail", choices=DETAILS, help="full: /find + details (default); find: /find only"
    )
    run_p.add_argument("--language", help="TMDB language (default pt-BR)")
    run_p.add_argument(
        "--append", metavar="A,B", help="append_to_response (default credits,keywords,...)"
    )
    run_p.add_argument("--date", help="processing date YYYY-MM-DD for the path (default today UTC)")
    run_p.add_argument("--offset", type=int, help="skip this many distinct ids (default 0)")
    run_p.add_argument("--limit", type=int, help="take at most this many distinct ids")
    run_p.add_argument("--chunk-size", type=int, help=f"records per file, 1..{MAX_CHUNK}")
    run_p.add_argument("--format", choices=FORMATS, help="json array (default) or jsonl")
    run_p.add_argument("--concurrency", type=int, help="simultaneous requests (default 20)")
    run_p.add_argument("--rate", type=float, help="requests per second (default 40)")
    run_p.add_argument("--max-attempts", type=int, help="attempts per request (default 6)")
    run_p.add_argument("--timeout", type=float, help="seconds per request (default 10)")
    run_p.add_argument("--tmdb-url", help="TMDB base URL (env TMDB_BASE_URL)")
    run_p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="redo every chunk, even those an interrupted earlier run of this job finished",
    )
    run_p.add_argument(
        "--skip-existing",
        action="store_true",
        help="incremental: skip ids that earlier runs already wrote under <dest>/Raw/TMDB/JSON/",
    )
    run_p.add_argument(
        "--time-budget",
        type=float,
        help="stop starting new ids after this many seconds and report where to continue",
    )
    run_p.add_argument("--json", action="store_true", help="print a JSON summary as last line")
    run_p.add_argument("--quiet", action="store_true", help="no progress bar, no summary text")
    run_p.add_argument(
        "--log-level",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (env TMDB_LOG_LEVEL; default WARNING)",
    )

    fake = commands.add_parser(
        "fake-tmdb", help="start the fake TMDB server (options: fake-tmdb --help)", add_help=False
    )
    fake.add_argument("args", nargs=argparse.REMAINDER)
    local_map = commands.add_parser(
        "local-map",
        help="run a CSV like the Step Functions Distributed Map does, locally (local-map --help)",
        add_help=False,
    )
    local_map.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """CLI options over environment defaults over built-in defaults."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = env_defaults(env)
    for option, name in _OPTION_FIELDS.items():
        value = getattr(args, option)
        if value is not None:
            values[name] = value
    if isinstance(values.get("append_to_response"), str):
        values["append_to_response"] = parse_append(values["append_to_response"])
    if isinstance(values.get("date"), str):
        values["date"] = parse_date(values["date"], "--date")
    values["dest"] = args.dest or values.get("dest") or ""
    if not values["dest"]:
        raise UsageError("dest: missing; pass --dest or set TMDB_DEST")
    values["resume"] = args.resume
    values["skip_existing"] = args.skip_existing
    return Settings(source=args.source, credentials=Credentials.from_env(env), **values).validate()


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(unit=" ids", desc="TMDB", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def _print_summary(summary: Summary) -> None:
    print(
        f"{summary.status}: {summary.unique_ids} distinct ids -> {summary.records} records in "
        f"{len(summary.files)} files; {summary.not_found} not found, {summary.invalid} invalid, "
        f"{summary.failed} failed; {summary.requests} requests ({summary.throttled_429} x 429) "
        f"in {summary.seconds:.1f}s",
        file=sys.stderr,
    )
    if summary.files:
        print(f"data files under {summary.files[0].rsplit('/', 1)[0]}/", file=sys.stderr)
    if summary.manifest:
        print(f"manifest: {summary.manifest}", file=sys.stderr)
    if summary.next_offset is not None:
        print(f"continue with: --offset {summary.next_offset}", file=sys.stderr)


_DEADLINE_HINT = "give a longer --time-budget, or a smaller --chunk-size"


async def _run_cancellable(
    settings: Settings, budget: float | None, margin: float, progress: Any
) -> Summary:
    """Run, turning SIGTERM into a clean cancellation like Ctrl-C."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    remaining = None
    if budget is not None:
        end = time.monotonic() + budget
        remaining = lambda: end - time.monotonic()  # noqa: E731
    return await run(settings, remaining=remaining, safety_margin=margin, progress=progress)


def _fail(exc: BaseException, code: int, as_json: bool) -> int:
    """One redacted line on stderr (and as the --json line)."""
    text = describe_error(exc)
    print(f"error: {text}", file=sys.stderr)
    if as_json:
        print(json.dumps({"status": "error", "error": text, "exit_code": code}))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-tmdb"]:
        from .fake_tmdb import main as fake_main

        return fake_main(argv[1:])
    if argv[:1] == ["local-map"]:
        from .local_map import main as local_map_main

        return local_map_main(argv[1:])
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    try:
        logsetup.configure(log_level(args.log_level, env, "WARNING"), "text", secret_values(env))
        settings = settings_from_args(args, env)
        budget = args.time_budget
        margin = 0.0 if budget is None else check_time_budget(budget)
        show_bar = not (args.quiet or args.json) and sys.stderr.isatty()
        with _progress(show_bar) as progress:
            summary = asyncio.run(_run_cancellable(settings, budget, margin, progress))
        require_progress(summary, margin, _DEADLINE_HINT)
    except IngestError as exc:
        return _fail(exc, int(exc.exit_code), args.json)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: finished chunks are written; see the manifest", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: its traceback, with the secret masked
        print(redacted_traceback(exc), file=sys.stderr, end="")
        return _fail(exc, 1, args.json)
    if not args.quiet:
        _print_summary(summary)
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False))
    return int(summary.exit_code)
