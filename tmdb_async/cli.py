"""Command line: ``python -m tmdb_async run SOURCE --dest DEST [options]``.

Exit codes (also in the README): 0 every id accounted for; 1 some ids failed after retries;
2 bad usage, bad input or missing/rejected credentials; 3 source or destination storage
failure; 4 stopped at ``--time-budget`` (continue with the printed ``--offset``);
130 interrupted.
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
    env_defaults,
    parse_append,
    parse_date,
)
from .errors import ExitCode, IngestError
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
    run_p.add_argument("--log-level", default=os.environ.get("TMDB_LOG_LEVEL", "WARNING"))

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


async def _run_cancellable(settings: Settings, budget: float | None, progress: Any) -> Summary:
    """Run, turning SIGTERM into a clean cancellation like Ctrl-C."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    remaining = None
    if budget is not None:
        end = time.monotonic() + budget
        remaining = lambda: end - time.monotonic()  # noqa: E731
    # With a budget, keep the last 10% (at least 5 s, at most 60 s) to finish in-flight ids.
    margin = 0.0 if budget is None else min(60.0, max(5.0, budget * 0.1))
    return await run(settings, remaining=remaining, safety_margin=margin, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-tmdb"]:
        from .fake_tmdb import main as fake_main

        return fake_main(argv[1:])
    if argv[:1] == ["local-map"]:
        from .local_map import main as local_map_main

        return local_map_main(argv[1:])
    args = _parser().parse_args(argv)
    secrets = [os.environ.get("TMDB_READ_ACCESS_TOKEN"), os.environ.get("TMDB_API_KEY")]
    logsetup.configure(args.log_level, "text", secrets)
    try:
        settings = settings_from_args(args)
        if not settings.dest:
            raise IngestError("dest: missing; pass --dest or set TMDB_DEST")
        show_bar = not (args.quiet or args.json) and sys.stderr.isatty()
        with _progress(show_bar) as progress:
            summary = asyncio.run(_run_cancellable(settings, args.time_budget, progress))
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"status": "error", "error": str(exc), "exit_code": exc.exit_code}))
        return int(exc.exit_code)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: finished chunks are written; see the manifest", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    if not args.quiet:
        _print_summary(summary)
    if args.json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False))
    return int(summary.exit_code)
