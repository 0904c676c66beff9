"""Command line: ``python -m tmdb_async run`` as a user runs it, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOKEN
from tests.support.lake import read_local
from tmdb_async.lake.idmap_columns import IdMap
from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    full_env.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmdb_async",
        *args,
        cwd=ROOT,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_prints_a_json_summary_as_last_line_and_exits_0(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    code, out, err = await cli(
        "run",
        str(ROOT / "samples" / "movies.csv"),
        "--dest",
        str(tmp_path),
        "--tmdb-url",
        fake_tmdb.url,
        "--date",
        "2022-05-02",
        "--rate",
        "500",
        "--json",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "ok"
    assert summary["unique_ids"] == summary["records"] + summary["not_found"] + summary["invalid"]
    assert summary["invalid"] == 1
    assert summary["files_written"] == len(summary["files"]) >= 1
    assert all("/Raw/TMDB/JSON/2022/05/02/" in f for f in summary["files"])
    assert TOKEN not in out + err


async def test_failed_ids_exit_1(tmp_path: Path) -> None:
    ids = title_ids(5, "movie")
    config = FakeTmdbConfig(token=TOKEN, fault_ids=frozenset({ids[0]}))
    async with FakeTmdb(config) as fake:
        code, out, _ = await cli(
            "run",
            str(write_csv(tmp_path / "m.csv", ids)),
            "--dest",
            str(tmp_path / "lake"),
            "--tmdb-url",
            fake.url,
            "--max-attempts",
            "2",
            "--json",
            env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
        )
    assert code == 1
    assert json.loads(out.splitlines()[-1])["failed"] == 1


async def test_a_rerun_during_an_outage_says_the_failed_ids_kept_their_answers(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    csv_path = str(write_csv(tmp_path / "m.csv", title_ids(8, "movie")))
    args = ("run", csv_path, "--dest", str(tmp_path / "lake"), "--date", "2026-11-24")
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    assert (await cli(*args, "--tmdb-url", fake_tmdb.url, env=env))[0] == 0
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, fault_5xx=1.0)) as outage:
        code, _, err = await cli(
            *args, "--tmdb-url", outage.url, "--no-resume", "--max-attempts", "1", env=env
        )
    assert code == 1
    assert "8 failed" in err
    assert "8 of the failed kept the answer TMDB gave them before" in err


async def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("titulo|ano\nx|1\n")
    code, _, err = await cli(
        "run", str(bad), "--dest", str(tmp_path), env={"TMDB_READ_ACCESS_TOKEN": TOKEN}
    )
    assert code == 2
    expected = "line 1: no id column: the header 'titulo|ano' has none of id, imdb_id, tconst"
    assert err.strip() == f"error: {bad}: {expected}"


async def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    code, _, err = await cli("run", "samples/movies.csv", "--dest", str(tmp_path))
    assert code == 2
    assert "no TMDB credentials" in err
    assert "Traceback" not in err


async def test_rejected_credentials_exit_2(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--tmdb-url",
        fake_tmdb.url,
        env={"TMDB_READ_ACCESS_TOKEN": "wrong-token-value"},
    )
    assert code == 2
    assert "rejected the credentials" in err
    assert "wrong-token-value" not in err


async def test_bad_option_values_exit_2(tmp_path: Path) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--chunk-size",
        "500",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 2
    assert "chunk_size: 500 is outside 1..100" in err


async def test_unwritable_destination_exits_3(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(blocker),
        "--tmdb-url",
        fake_tmdb.url,
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 3
    assert "cannot write" in err


def _one_error_line(err: str) -> str:
    """The CLI's refusal: exactly one line, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("options", "env", "field"),
    [
        (["--rate", "inf"], {}, "rate: inf"),
        (["--rate", "nan"], {}, "rate: nan"),
        (["--rate", "1e400"], {}, "rate: inf"),
        (["--rate", "10001"], {}, "rate: 10001.0 is above 10000"),
        (["--timeout", "inf"], {}, "request_timeout: inf"),
        ([], {"TMDB_RATE": "inf"}, "rate: inf"),
        ([], {"TMDB_REQUEST_TIMEOUT": "nan"}, "request_timeout: nan"),
    ],
)
async def test_rate_inf_or_nan_is_a_usage_error_not_a_hang(
    tmp_path: Path, options: list[str], env: dict[str, str], field: str
) -> None:
    code, out, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path / "lake"),
        "--json",
        *options,
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN, **env},
    )
    assert code == 2
    assert field in _one_error_line(err)
    assert json.loads(out.splitlines()[-1])["exit_code"] == 2
    assert not (tmp_path / "lake").exists()  # refused before any I/O


@pytest.mark.parametrize("budget", ["0", "-5", "nan", "inf", "1", "2"])
async def test_a_time_budget_too_short_for_one_chunk_is_a_usage_error(
    tmp_path: Path, budget: str
) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path / "lake"),
        "--time-budget",
        budget,
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 2
    assert "--time-budget" in _one_error_line(err)
    assert not (tmp_path / "lake").exists()  # refused before any I/O


async def test_a_time_budget_that_ends_before_any_id_is_a_deadline_error_not_a_continuation(
    tmp_path: Path,
) -> None:
    # TMDB answers after 10 s; a 3 s budget (2 s margin) cannot account for a single id. The
    # old exit 4 with next_offset 0 sent a loop on --offset round for ever.
    ids = title_ids(5, "movie")
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=10.0)) as fake:
        code, out, err = await cli(
            "run",
            str(write_csv(tmp_path / "m.csv", ids)),
            "--dest",
            str(tmp_path / "lake"),
            "--tmdb-url",
            fake.url,
            "--time-budget",
            "3",
            "--quiet",
            "--log-level",
            "error",  # the pipeline's own warning about the deadline is a log line
            "--json",
            env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
        )
    assert code == 2
    assert "no progress before the deadline" in _one_error_line(err)
    assert json.loads(out.splitlines()[-1]) == {
        "status": "error",
        "error": _one_error_line(err).removeprefix("error: "),
        "exit_code": 2,
    }


async def test_a_token_with_a_trailing_carriage_return_is_stripped_and_works(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    code, out, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--tmdb-url",
        fake_tmdb.url,
        "--rate",
        "500",
        "--json",
        env={"TMDB_READ_ACCESS_TOKEN": f"  {TOKEN}\r\n"},
    )
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["status"] == "ok"
    assert TOKEN not in out + err


@pytest.mark.parametrize("variable", ["TMDB_READ_ACCESS_TOKEN", "TMDB_API_KEY"])
@pytest.mark.parametrize("inside", ["\r", "\x07", " ", "é", "\u200b"])
async def test_a_token_with_control_characters_is_refused_without_echoing_it(
    tmp_path: Path, variable: str, inside: str
) -> None:
    secret = f"zq9-secret{inside}part-7x"
    code, out, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        "--json",
        env={variable: secret},
    )
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith(f"error: {variable} contains a space, control")
    for shown in (out, err):
        assert "zq9-secret" not in shown and "part-7x" not in shown


@pytest.mark.parametrize(
    ("options", "env", "where"),
    [
        (["--log-level", "verbose"], {}, "--log-level: 'verbose' is not one of DEBUG, INFO"),
        ([], {"TMDB_LOG_LEVEL": "verbose"}, "TMDB_LOG_LEVEL: 'verbose' is not one of"),
        (["--log-level", "10"], {}, "--log-level: '10'"),
    ],
)
async def test_an_unknown_log_level_is_a_usage_error(
    tmp_path: Path, options: list[str], env: dict[str, str], where: str
) -> None:
    code, _, err = await cli(
        "run",
        "samples/movies.csv",
        "--dest",
        str(tmp_path),
        *options,
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN, **env},
    )
    assert code == 2
    assert where in _one_error_line(err)


async def test_log_levels_are_case_insensitive() -> None:
    # Accepted: the run goes on to the next check (no destination) instead.
    for options, env in ((["--log-level", "debug"], {}), ([], {"TMDB_LOG_LEVEL": "Info"})):
        code, _, err = await cli("run", "samples/movies.csv", *options, env=env)
        assert code == 2
        assert "dest: missing" in _one_error_line(err)


async def test_a_run_stopped_by_its_time_budget_after_some_ids_exits_4_and_says_where_to_go_on(
    tmp_path: Path,
) -> None:
    ids = title_ids(500, "movie")  # 1,000 requests: far more than a 6 s budget at 20/s
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        code, out, err = await cli(
            "run",
            str(write_csv(tmp_path / "m.csv", ids)),
            "--dest",
            str(tmp_path / "lake"),
            "--tmdb-url",
            fake.url,
            "--rate",
            "20",
            "--chunk-size",
            "5",
            "--time-budget",
            "6",
            "--json",
            env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
        )
    assert code == 4, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["status"] == "incomplete"
    assert 0 < summary["next_offset"] < 500  # the first id not started, chunk or not
    expected = f"continue with: --offset {summary['next_offset']} --date {summary['date']}"
    assert expected in err


async def test_idmap_rebuilds_the_map_of_a_lake_ingested_without_one(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """A lake written before the id map existed (or whose map was lost) learns it back from
    its records: the next day's run then asks each title once, by its TMDB id."""
    ids = title_ids(40, "tv")
    csv_path = str(write_csv(tmp_path / "series.csv", ids))
    lake = tmp_path / "lake"
    common = [
        "--dest",
        str(lake),
        "--tmdb-url",
        fake_tmdb.url,
        "--kind",
        "tv",
        "--rate",
        "500",
        "--json",
    ]
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    code, out, err = await cli("run", csv_path, "--date", "2022-05-02", *common, env=env)
    assert code == 0, err
    first = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(lake / "Raw/TMDB/_state/idmap")  # as before the map existed

    code, out, err = await cli("idmap", "--dest", str(lake), "--json")
    assert code == 0, err
    rebuilt = json.loads(out.strip().splitlines()[-1])
    assert rebuilt["titles"] == first["records"]
    assert rebuilt["files"] == len(first["files"])
    assert rebuilt["map"].endswith("Raw/TMDB/_state/idmap/map.bin")

    fake_tmdb.reset_stats()
    code, out, err = await cli("run", csv_path, "--date", "2022-05-03", *common, env=env)
    assert code == 0, err
    second = json.loads(out.strip().splitlines()[-1])
    assert second["records"] == first["records"]
    sent = fake_tmdb.stats().path_counts
    assert sum(n for p, n in sent.items() if p.startswith("/3/tv/")) == first["records"]
    assert sum(n for p, n in sent.items() if p.startswith("/3/find/")) == first["not_found"]


async def test_idmap_never_leaves_a_damaged_files_titles_out_of_the_map_silently(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """A data file truncated by hand: ``idmap`` learns every other title, then ends with one
    line naming the file, how many titles it left out and a fix that loses nothing (exit
    3), not "ok" (a refresh would no longer watch those titles)."""
    ids_a, ids_b = title_ids(10, "movie", start=4_900_000), title_ids(10, "movie", start=5_000_000)
    lake = tmp_path / "lake"
    common = ["--dest", str(lake), "--tmdb-url", fake_tmdb.url, "--date", "2022-05-02"]
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    for name, ids in (("a", ids_a), ("b", ids_b)):
        path = str(write_csv(tmp_path / f"{name}.csv", ids))
        code, out, err = await cli("run", path, *common, "--format", "jsonl", "--json", env=env)
        assert code == 0, err
    records = {i for i in ids_a + ids_b if kind_of(int(i[2:])) is not None}
    folder = lake / "Raw/TMDB/JSON/2022/05/02"
    [damaged] = folder.glob("a-*.jsonl")
    inside = len(damaged.read_bytes().splitlines())
    damaged.write_bytes(damaged.read_bytes()[:-30])  # the last record cut short

    code, out, err = await cli("idmap", "--dest", str(lake), "--json")
    assert code == 3 and json.loads(out)["exit_code"] == 3
    assert err.startswith(f"error: {damaged}: damaged (") and len(err.strip().splitlines()) == 1
    assert f"without the {inside} titles it holds" in err and "do not delete it" in err
    base = lake / "Raw/TMDB/_state/idmap/map.bin"
    learned, _ = IdMap.decode(base.read_bytes(), str(base))  # written, with every other title
    assert {i for i in ids_a + ids_b if learned.get(i) is not None} == set(ids_b) & records


async def test_idmap_without_a_destination_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = await cli("idmap", "--json")
    assert code == 2
    assert err.strip() == "error: dest: missing; pass --dest or set TMDB_DEST"
    assert json.loads(out)["exit_code"] == 2


async def test_idmap_of_a_destination_without_data_files_is_refused(tmp_path: Path) -> None:
    """A mistyped --dest must not replace a good map with an empty one."""
    code, out, err = await cli("idmap", "--dest", str(tmp_path / "typo"), "--json")
    assert code == 2 and json.loads(out)["exit_code"] == 2
    assert err.startswith("error: ") and "no data files to learn the id map from" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "typo" / "Raw/TMDB/_state/idmap/map.bin").exists()


async def test_refresh_prints_a_json_summary_as_last_line_then_is_up_to_date(
    tmp_path: Path,
) -> None:
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    csv_path = write_csv(tmp_path / "m.csv", title_ids(150, "movie", start=1))
    cfg = FakeTmdbConfig(token=TOKEN, change_period=4, change_universe=2_000)
    async with FakeTmdb(cfg) as fake:
        common = ("--dest", str(tmp_path / "lake"), "--tmdb-url", fake.url, "--rate", "500")
        code, _, err = await cli("run", str(csv_path), *common, "--date", "2026-11-10", env=env)
        assert code == 0, err
        refresh = ("refresh", *common, "--date", "2026-11-13", "--json")
        code, out, err = await cli(*refresh, env=env)
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "ok" and summary["records"] > 0
        assert summary["window"] == {"start": "2026-11-10", "end": "2026-11-12"}
        assert summary["refreshed_through"] == "2026-11-12"
        assert "in the lake ->" in err and TOKEN not in out + err
        code, out, err = await cli(*refresh, env=env)
        assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "up_to_date"
        assert "up to date: changes refreshed through 2026-11-12" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-11-13"), "since: 2026-11-13 leaves no complete day"),
        (("--since", "13/11/2026"), "--since: '13/11/2026' is not a date"),
        ((), "no ingested data to refresh"),
    ],
)
async def test_refresh_refuses_bad_input_in_one_line_with_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, out, err = await cli(
        "refresh",
        "--dest",
        str(tmp_path / "empty"),
        "--date",
        "2026-11-13",
        "--tmdb-url",
        "http://127.0.0.1:9",
        *args,
        "--json",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 2


async def test_a_json_run_prints_its_json_line_when_stopped_by_sigterm(tmp_path: Path) -> None:
    """SIGTERM (a scheduler stopping the job) exits 130, and a ``--json`` caller still
    reads a JSON line, as on every other exit."""
    csv_path = write_csv(tmp_path / "m.csv", title_ids(400, "movie", start=7_100_000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env["TMDB_READ_ACCESS_TOKEN"] = TOKEN
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.05)) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tmdb_async", "run", str(csv_path),
            "--dest", str(tmp_path / "lake"), "--tmdb-url", fake.url, "--concurrency", "1",
            "--json", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):  # until it is talking to TMDB: a condition, polled
            while fake.stats().total_requests < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, err
    line = json.loads(out.decode().strip().splitlines()[-1])
    assert line["status"] == "interrupted" and line["exit_code"] == 130


async def test_the_continuation_of_a_slice_carries_its_limit_and_covers_exactly_its_rest(
    tmp_path: Path,
) -> None:
    """``--offset 100 --limit 200`` stopped at ``--time-budget``: the printed continuation
    names the remaining ``--limit``, so following it ends where the slice ends, not at the
    end of the file (over the next batches)."""
    ids = title_ids(500, "movie", start=7_200_000)
    csv_path = str(write_csv(tmp_path / "m.csv", ids))
    lake = tmp_path / "lake"
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        common = ["--dest", str(lake), "--tmdb-url", fake.url, "--chunk-size", "5", "--json"]
        code, out, err = await cli(
            "run", csv_path, *common, "--offset", "100", "--limit", "200",
            "--rate", "20", "--time-budget", "6", env=env,
        )  # fmt: skip
        assert code == 4, err
        first = json.loads(out.splitlines()[-1])
        assert 100 < first["next_offset"] < 300
        assert first["next_limit"] == 300 - first["next_offset"]
        printed = err.split("continue with: ", 1)[1].splitlines()[0].split()
        code, out, err = await cli("run", csv_path, *common, "--rate", "500", *printed, env=env)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["next_limit"] is None
    assert read_local(lake / f"Raw/TMDB/JSON/{first['date'].replace('-', '/')}").all_ids() == set(
        ids[100:300]
    )


@pytest.mark.parametrize("where", ["source", "dest"])
@pytest.mark.parametrize("case", ["symlink loop", "under a file", "name over 255 bytes"])
async def test_an_os_error_on_a_path_is_one_line_naming_it_with_a_documented_code(
    tmp_path: Path, where: str, case: str
) -> None:
    """Source: exit 2; destination: exit 3. Never a traceback (it was exit 1)."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "somefile.csv").write_text("id\ntt0000001\n")
    bad = {
        "symlink loop": tmp_path / "loop",
        "under a file": tmp_path / "somefile.csv" / "x.csv",
        "name over 255 bytes": tmp_path / ("é" * 130),
    }[case]
    good = {"source": tmp_path / "somefile.csv", "dest": tmp_path / "lake"}
    paths = {**good, where: bad}
    code, out, err = await cli(
        "run", str(paths["source"]), "--dest", str(paths["dest"]),
        "--tmdb-url", "http://127.0.0.1:9", "--json",
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )  # fmt: skip
    assert code == (2 if where == "source" else 3), err
    assert "Traceback" not in err
    [line] = err.splitlines()  # no warning first (the id map, read before, once was)
    assert line.startswith("error: ") and str(bad) in line
    assert json.loads(out.splitlines()[-1])["exit_code"] == code


# --- issue 19: the help comes from the declarations ----------------------------------------


def _readme_row(flag: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{flag}`"))
    return " ".join(row.replace("`", "").split())


def _help_of(flag: str) -> str:
    from tmdb_async.cli import _parser

    commands = next(a for a in _parser()._actions if a.dest == "command")
    run_p = commands.choices["run"]  # type: ignore[index]
    action = next(a for a in run_p._actions if flag in a.option_strings)
    return " ".join((action.help or "").split())


@pytest.mark.parametrize(
    ("flag", "phrase"),
    [
        ("--kind", "whichever TMDB has; a movie first when both"),
        ("--detail", "the short /find item only"),
        ("--no-resume", "even those the date folder already holds from an equivalent run"),
        ("--no-resume", "(same kind, detail, language, append, format)"),
    ],
)
def test_the_help_says_what_the_readme_says(flag: str, phrase: str) -> None:
    assert phrase in _readme_row(flag)
    assert phrase in _help_of(flag)


def test_the_help_of_detail_find_promises_no_request_saving_it_does_not_make() -> None:
    """``--detail find`` asks /find only, but measured 240 requests against 260 for full: no
    details request per title, not half the requests."""
    assert "half" not in _help_of("--detail")
    assert "no details request per title" in _help_of("--detail")


def test_choice_options_show_their_declared_choices() -> None:
    from tmdb_async.options import Choice
    from tmdb_async.settings import SCHEMA

    chosen = [s for s in SCHEMA if s.option.flag and isinstance(s.option.check, Choice)]
    assert {s.name for s in chosen} == {"kind", "detail", "output_format"}
    for spec in chosen:
        assert isinstance(spec.option.check, Choice)
        shown = "{" + ",".join(spec.option.check.choices) + "}"
        assert f"{spec.option.flag} {shown}" in _run_help()


def _run_help() -> str:
    from tmdb_async.cli import _parser

    commands = next(a for a in _parser()._actions if a.dest == "command")
    return str(commands.choices["run"].format_help())  # type: ignore[index]


# --- status -----------------------------------------------------------------------------------


async def test_status_prints_the_folders_table_and_as_json_one_object_it_exits_0(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    """Read from a lake a run just wrote: the human table names the folder and its counts;
    ``--json`` is one object whose counts are what the folder holds."""
    code, _, err = await cli(
        *("run", str(ROOT / "samples" / "movies.csv"), "--dest", str(tmp_path)),
        *("--tmdb-url", fake_tmdb.url, "--date", "2022-05-02", "--rate", "500"),
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 0, err
    code, out, err = await cli("status", "--dest", str(tmp_path))
    assert code == 0 and not err, err
    lines = out.splitlines()
    assert lines[2].split() == [
        *("date", "ids", "record", "not", "found", "invalid", "failed", "deleted"),
        *("files", "runs"),
    ]
    view = read_local(tmp_path / "Raw/TMDB/JSON/2022/05/02")
    row = lines[3].split()
    assert row[:3] == ["2022-05-02", str(len(view.all_ids())), str(len(view.records))]
    assert "refresh: never run" in out and "runs in progress or interrupted: none" in out
    code, out, err = await cli("status", "--dest", str(tmp_path), "--json", "--failed")
    assert code == 0, err
    (shown,) = json.loads(out)["folders"]
    assert shown["ids"]["record"] == len(view.records) and shown["failed"] == []
    assert shown["runs"][0]["outcome"] == "ok" and TOKEN not in out


async def test_status_of_a_place_without_a_lake_exits_3_with_one_line_naming_it(
    tmp_path: Path,
) -> None:
    code, out, err = await cli("status", "--dest", str(tmp_path / "typo"), "--json")
    assert code == 3 and json.loads(out)["exit_code"] == 3
    assert err.strip() == f"error: {tmp_path / 'typo'}: no lake here (nothing under " + (
        "Raw/TMDB/JSON/ or Raw/TMDB/_state/)"
    )
    assert not (tmp_path / "typo").exists()


async def test_status_without_a_destination_or_with_a_bad_date_is_a_usage_error() -> None:
    code, _, err = await cli("status")
    assert code == 2 and err.strip() == "error: dest: missing; pass --dest or set TMDB_DEST"
    code, _, err = await cli("status", "--dest", "x", "--date", "2022-13-01")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--date" in err


# --- report -----------------------------------------------------------------------------------


async def test_report_writes_one_page_of_the_lake_and_prints_where(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    code, _, err = await cli(
        *("run", str(ROOT / "samples" / "movies.csv"), "--dest", str(tmp_path / "lake")),
        *("--tmdb-url", fake_tmdb.url, "--date", "2022-05-02", "--rate", "500"),
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 0, err
    page = tmp_path / "report.html"
    code, out, err = await cli("report", "--dest", str(tmp_path / "lake"), "--out", str(page))
    assert code == 0 and not err, err
    text = page.read_text(encoding="utf-8")
    assert out.strip() == f"report: {page} ({len(text.encode()):,} bytes)"
    assert text.startswith("<!DOCTYPE html>") and ">2022-05-02<" in text and "movies.csv" in text
    code, out, err = await cli(
        "report", "--dest", str(tmp_path / "lake"), "--out", str(page), "--json"
    )
    assert code == 0 and json.loads(out) == {
        "status": "ok",
        "out": str(page),
        "bytes": page.stat().st_size,
    }


async def test_report_of_a_place_without_a_lake_exits_3_with_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    code, out, err = await cli("report", "--dest", str(tmp_path / "typo"), "--out", str(page))
    assert code == 3 and not out
    assert err.strip() == f"error: {tmp_path / 'typo'}: no lake here (nothing under " + (
        "Raw/TMDB/JSON/ or Raw/TMDB/_state/)"
    )
    assert not page.exists() and not (tmp_path / "typo").exists()
    code, _, err = await cli("report")
    assert code == 2 and err.strip() == "error: dest: missing; pass --dest or set TMDB_DEST"


@pytest.mark.slow
async def test_the_secret_never_reaches_the_report_even_with_failures_and_faults(
    tmp_path: Path,
) -> None:
    """The canary credential of tests/test_secrets.py, faults on, ids failing: the page
    shows the failures and their reasons, never the token."""
    from tests.test_secrets import CANARY, FAULTS

    csv_path = write_csv(tmp_path / "in.csv", title_ids(60))
    async with FakeTmdb(FakeTmdbConfig(token=CANARY, **FAULTS)) as fake:
        code, _, err = await cli(
            *("run", str(csv_path), "--dest", str(tmp_path / "lake"), "--tmdb-url", fake.url),
            *("--max-attempts", "2", "--timeout", "2", "--rate", "500"),
            env={"TMDB_READ_ACCESS_TOKEN": CANARY},
        )
    assert code == 1, err  # tt1000001 always fails
    page = tmp_path / "report.html"
    code, _, err = await cli(
        "report",
        "--dest",
        str(tmp_path / "lake"),
        "--out",
        str(page),
        env={"TMDB_READ_ACCESS_TOKEN": CANARY},
    )
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "tt1000001" in text  # the id TMDB always fails: in the failures table
    assert CANARY not in text


def _sample_run(dest: Path, url: str, *more: str) -> list[str]:
    return [
        "run", str(ROOT / "samples" / "movies.csv"), "--dest", str(dest), "--tmdb-url", url,
        "--date", "2022-05-02", "--rate", "500", "--kind", "movie", *more,
    ]  # fmt: skip


async def test_a_dry_run_prints_the_estimate_and_sends_no_request(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    code, out, err = await cli(*_sample_run(tmp_path / "lake", fake_tmdb.url, "--dry-run"), env=env)
    assert code == 0, err
    assert "dry run: nothing sent to TMDB, nothing written" in err
    assert "241 distinct ids for 2022-05-02" in err
    assert "240 it does not (1-3 requests each)" in err
    assert "estimate: 240-720 requests, ~0.5-1.4 s at 500 requests/s" in err
    code, out, err = await cli(
        *_sample_run(tmp_path / "lake", fake_tmdb.url, "--dry-run", "--json"), env=env
    )
    line = json.loads(out.strip().splitlines()[-1])
    assert line["status"] == "dry_run" and line["unique_ids"] == 241 and line["invalid"] == 1
    assert (line["requests_min"], line["requests_max"]) == (240, 720)
    assert fake_tmdb.stats().total_requests == 0
    assert not (tmp_path / "lake").exists()


async def test_a_rerun_says_plainly_that_nothing_needed_doing(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    code, _, err = await cli(*_sample_run(tmp_path / "lake", fake_tmdb.url), env=env)
    assert code == 0, err
    assert "0 kept, 0 skipped, 0 replaced" in err
    code, _, err = await cli(*_sample_run(tmp_path / "lake", fake_tmdb.url), env=env)
    assert code == 0, err
    assert "ok: 241 distinct ids: all 241 already in 2022-05-02 (kept); nothing to fetch" in err


async def test_an_offset_past_the_end_says_how_many_ids_the_source_has(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    code, _, err = await cli(
        *_sample_run(tmp_path / "lake", fake_tmdb.url, "--offset", "5000"),
        env={"TMDB_READ_ACCESS_TOKEN": TOKEN},
    )
    assert code == 0, err
    assert "--offset 5000 is past the end: " in err and "has 241 distinct ids" in err


async def test_other_record_settings_are_refused_in_one_line_before_any_request(
    tmp_path: Path, fake_tmdb: FakeTmdb
) -> None:
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    await cli(*_sample_run(tmp_path / "lake", fake_tmdb.url), env=env)
    fake_tmdb.reset_stats()
    for more, says in (
        (
            ("--kind", "auto"),
            "240 answers fetched with other record settings (--kind movie, this run auto)",
        ),
        (("--format", "jsonl"), "holds 3 json files and this run writes jsonl"),
    ):
        args = [a for a in _sample_run(tmp_path / "lake", fake_tmdb.url) if a != "movie"]
        args.remove("--kind")
        extra = more if more[0] == "--kind" else ("--kind", "movie", *more)
        code, out, err = await cli(*args, *extra, "--json", env=env)
        assert code == 2, err
        assert says in err and "--replace" in err and len(err.strip().splitlines()) == 1
        assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 2
    assert fake_tmdb.stats().total_requests == 0


async def test_run_refuses_a_date_after_today(tmp_path: Path, fake_tmdb: FakeTmdb) -> None:
    args = [a if a != "2022-05-02" else "2099-01-01" for a in _sample_run(tmp_path, fake_tmdb.url)]
    code, _, err = await cli(*args, env={"TMDB_READ_ACCESS_TOKEN": TOKEN})
    assert code == 2
    assert "date: 2099-01-01 is after today (" in err and len(err.strip().splitlines()) == 1


async def test_json_on_an_error_still_carries_the_counts_so_far(tmp_path: Path) -> None:
    ids = title_ids(30, "movie", start=7_300_000)
    lake = tmp_path / "lake"
    env = {"TMDB_READ_ACCESS_TOKEN": TOKEN}
    common = ["--dest", str(lake), "--date", "2022-05-02", "--kind", "movie", "--json"]
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        code, _, err = await cli(
            "run", str(write_csv(tmp_path / "a.csv", ids[:20])), *common, "--tmdb-url", fake.url,
            env=env,
        )  # fmt: skip
        assert code == 0, err
    code, out, err = await cli(
        "run", str(write_csv(tmp_path / "b.csv", ids)), *common,
        "--tmdb-url", "http://127.0.0.1:1", env=env,
    )  # fmt: skip
    assert code == 5, err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["status"] == "error" and line["exit_code"] == 5 and "unreachable" in line["error"]
    assert line["kept"] == 20 and line["unique_ids"] == 20 and line["requests"] > 0
    assert line["next_offset"] == 20 and await asyncio.to_thread(Path(line["manifest"]).exists)


async def test_sigterm_prints_the_manifest_and_the_exact_command_that_continues(
    tmp_path: Path,
) -> None:
    ids = title_ids(400, "movie", start=7_400_000)
    csv_path = write_csv(tmp_path / "m.csv", ids)
    lake = tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env["TMDB_READ_ACCESS_TOKEN"] = TOKEN
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN, latency=0.05)) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tmdb_async", "run", str(csv_path),
            "--dest", str(lake), "--tmdb-url", fake.url, "--concurrency", "1",
            "--chunk-size", "5", "--limit", "300", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):  # until it is talking to TMDB: a condition, polled
            while fake.stats().total_requests < 12:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        _, raw = await asyncio.wait_for(process.communicate(), timeout=60)
        err = raw.decode()
        assert process.returncode == 130, err
        manifest = err.split("manifest: ", 1)[1].splitlines()[0]
        written = json.loads(await asyncio.to_thread(Path(manifest).read_text))
        assert written["next_offset"] is not None
        command = err.split("continue with: ", 1)[1].splitlines()[0]
        words = command.split()
        assert words[:3] == ["python", "-m", "tmdb_async"] and "--offset" in words
        assert words[words.index("--limit") + 1] == str(
            300 - int(words[words.index("--offset") + 1])
        )
        code, _, err = await cli(*words[3:], env={"TMDB_READ_ACCESS_TOKEN": TOKEN})
    assert code == 0, err
    date = written["settings"]["date"]
    view = read_local(lake / f"Raw/TMDB/JSON/{date.replace('-', '/')}")
    assert not view.duplicates() and view.all_ids() == set(ids[:300])


def _fetching_titles(fake: FakeTmdb) -> bool:
    """The refresh has read its change lists and asks titles by TMDB id."""
    return any(p.startswith("/3/movie/") and p[9:].isdigit() for p in fake.stats().path_counts)


async def test_a_refresh_dry_run_and_a_refresh_stopped_by_sigterm_say_what_to_do(
    tmp_path: Path,
) -> None:
    """``refresh --dry-run`` says it read the change lists and what it would fetch; a
    refresh stopped by SIGTERM prints the command that continues it, which finishes it."""
    csv_path = write_csv(tmp_path / "m.csv", title_ids(300, "movie", start=1))
    cfg = FakeTmdbConfig(token=TOKEN, change_period=2, change_universe=2_000, latency=0.02)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMDB_")}
    env["TMDB_READ_ACCESS_TOKEN"] = TOKEN
    async with FakeTmdb(cfg) as fake:
        common = ("--dest", str(tmp_path / "lake"), "--tmdb-url", fake.url, "--rate", "500")
        code, _, err = await cli("run", str(csv_path), *common, "--date", "2026-11-10", env=env)
        assert code == 0, err
        refresh = ("refresh", *common, "--date", "2026-11-13", "--concurrency", "1")
        code, _, err = await cli(*refresh, "--dry-run", env=env)
        assert code == 0, err
        assert "dry run: nothing sent to TMDB but the change lists (" in err
        to_fetch = int(err.split("  to fetch: ", 1)[1].split(":", 1)[0])
        assert to_fetch > 20
        fake.reset_stats()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tmdb_async", *refresh, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):  # until it is fetching titles: a condition, polled
            while not _fetching_titles(fake):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        _, raw = await asyncio.wait_for(process.communicate(), timeout=60)
        err = raw.decode()
        assert process.returncode == 130, err
        command = err.split("continue with: ", 1)[1].splitlines()[0].split()
        assert command[:4] == ["python", "-m", "tmdb_async", "refresh"]
        assert command[-2:] == ["--date", "2026-11-13"]
        code, _, err = await cli(*command[3:], "--json", env=env)
    assert code == 0, err
