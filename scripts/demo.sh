#!/usr/bin/env bash
# The main job on the bundled samples, offline: a fake TMDB on loopback (40 requests/s,
# 20 connections, 30 ms latency, like the real one), the engine writing into ./out.
#
# Two days in one go: the samples are ingested dated yesterday (UTC) from a fake TMDB whose
# "today" is yesterday, then a refresh dated today asks a fake at today which titles changed
# yesterday and fetches them again. The fake's change lists hold the samples' ids only
# (--change-range samples), a title changing on 1 day in 7: about 30 movies and 7 series a
# day, and a title fetched after its change shows more votes and another popularity.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-out}"
TOKEN="demo-read-access-token"
port_file="$(mktemp)"
rm -f "$port_file"
fake_pid=""
trap 'if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; fi; rm -f "$port_file"' EXIT

# A lake left by an earlier demo is replaced; any other folder is left alone.
if [ -e "$OUT" ] && [ ! -e "$OUT/.tmdb-demo" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "$OUT exists and is not a demo's output: set OUT=<an empty or new folder>" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.tmdb-demo"

today="$("$PY" -c 'import datetime as d; print(d.datetime.now(d.UTC).date())')"
yesterday="$("$PY" -c 'import datetime as d; print(d.datetime.now(d.UTC).date() - d.timedelta(days=1))')"

start_fake() {  # start_fake DAY: the fake TMDB as it is on DAY; sets url and fake_pid
  rm -f "$port_file"
  "$PY" -m tmdb_devtools fake-tmdb --port 0 --port-file "$port_file" --token "$TOKEN" \
    --latency 0.03 --rate-limit 40 --max-connections 20 \
    --change-universe 0 --change-range samples --change-period 7 --today "$1" >/dev/null &
  fake_pid=$!
  for _ in $(seq 1 100); do  # wait (at most 10 s) for the fake to say which port it took
    [ -s "$port_file" ] && break
    kill -0 "$fake_pid" 2>/dev/null || { echo "fake TMDB did not start" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$port_file" ] || { echo "fake TMDB did not start within 10 s" >&2; exit 1; }
  url="http://127.0.0.1:$(cat "$port_file")"
}

stop_fake() {
  kill "$fake_pid" 2>/dev/null || true
  wait "$fake_pid" 2>/dev/null || true
  fake_pid=""
}

export TMDB_READ_ACCESS_TOKEN="$TOKEN"
start_fake "$yesterday"
echo "== the cost before the work: tmdb-ingest run samples/movies.csv ... --dry-run"
"$PY" -m tmdb_async run samples/movies.csv --dest "$OUT" --kind movie --date "$yesterday" --tmdb-url "$url" --dry-run
echo
echo "== movies: samples/movies.csv -> $OUT, dated $yesterday (fake TMDB at $url, its today $yesterday)"
"$PY" -m tmdb_async run samples/movies.csv --dest "$OUT" --kind movie --date "$yesterday" --tmdb-url "$url"
echo "== the same run again: nothing to fetch"
"$PY" -m tmdb_async run samples/movies.csv --dest "$OUT" --kind movie --date "$yesterday" --tmdb-url "$url"
echo "== again with --kind auto: the guard stops it before any request (exit 2)"
if "$PY" -m tmdb_async run samples/movies.csv --dest "$OUT" --kind auto --date "$yesterday" --tmdb-url "$url"; then
  echo "the guard did not stop a rerun with other record settings" >&2
  exit 1
fi
echo "== series: samples/series.csv -> $OUT, dated $yesterday"
"$PY" -m tmdb_async run samples/series.csv --dest "$OUT" --kind tv --date "$yesterday" --tmdb-url "$url"
stop_fake

folder="$(find "$OUT/Raw/TMDB/JSON" -mindepth 3 -maxdepth 3 -type d | LC_ALL=C sort | tail -n 1)"
echo
echo "== data files in $folder/ (a plain *.json glob reads these and nothing else):"
find "$folder" -maxdepth 1 -type f -name '*.json*' | LC_ALL=C sort | while read -r f; do
  printf '  %-60s %8s bytes\n' "${f#"$folder"/}" "$(wc -c <"$f")"
done
echo "== sidecars, manifests and the ledger, in _-prefixed folders:"
find "$folder" -mindepth 2 -type f -path "$folder/_*" | LC_ALL=C sort | while read -r f; do
  printf '  %s\n' "${f#"$folder"/}"
done
first="$(find "$folder" -maxdepth 1 -type f -name 'movies-*.json' | LC_ALL=C sort | head -n 1)"
echo
echo "== first record of $first:"
"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1], encoding="utf-8"))[0]; print(json.dumps({k: r.get(k) for k in ("imdb_id","media_type","id","title","release_date","runtime")}, ensure_ascii=False, indent=1))' "$first"

echo
start_fake "$today"
echo "== refresh dated $today: the titles TMDB changed on $yesterday, fetched again (fake TMDB at its today $today)"
"$PY" -m tmdb_async refresh --dest "$OUT" --date "$today" --tmdb-url "$url"
stop_fake

echo
echo "== refreshed records against the ones fetched the day before:"
"$PY" - "$OUT/Raw/TMDB/JSON" "$yesterday" "$today" <<'PYTHON'
import json, sys
from pathlib import Path

root, before, after = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def records(day: str) -> dict[str, dict]:
    found = {}
    for path in sorted((root / day.replace("-", "/")).glob("*.json")):
        for record in json.loads(path.read_text(encoding="utf-8")):
            found[record["imdb_id"]] = record
    return found

old, new = records(before), records(after)
shown = {"movie": 0, "tv": 0}
for imdb_id, record in sorted(new.items()):
    kind = record.get("media_type")
    if imdb_id not in old or kind not in shown or shown[kind] >= 3:
        continue
    shown[kind] += 1
    was = old[imdb_id]
    name = record.get("title") or record.get("name")
    print(
        f"  {imdb_id} {kind:<5} {name!s:<32} vote_count {was['vote_count']:>6} -> "
        f"{record['vote_count']:<6} popularity {was['popularity']:>8} -> {record['popularity']}"
    )
changed = sum(1 for i, r in new.items() if i in old and r != old[i])
print(f"  {changed} of {len(new)} refreshed records differ from the day before")
PYTHON

# == status and report (issue 20) =========================================================
echo
echo "== what the lake holds: tmdb-ingest status --dest $OUT"
"$PY" -m tmdb_async status --dest "$OUT"
echo
echo "== the current state of every title (docs/queries/current_duckdb.sql)"
if "$PY" -c 'import duckdb' 2>/dev/null; then
  "$PY" - "$OUT" <<'PYTHON'
import sys
from pathlib import Path

import duckdb

con = duckdb.connect()
con.execute("SET VARIABLE lake = ?", [str(Path(sys.argv[1]).resolve())])
query = Path("docs/queries/current_duckdb.sql").read_text(encoding="utf-8").strip().rstrip(";")
rows, titles, dated = con.execute(
    f"SELECT count(*), count(DISTINCT imdb_id), count(DISTINCT processing_date) FROM ({query})"
).fetchone()
print(f"  {rows} titles, each once ({titles} distinct), their latest records from {dated} date folders")
PYTHON
else
  echo "  (DuckDB is a dev dependency: .venv/bin/pip install duckdb, then run the query)"
fi

echo
echo "== the report to look at: tmdb-ingest report --dest $OUT --out $OUT/report.html"
"$PY" -m tmdb_async report --dest "$OUT" --out "$OUT/report.html"
# == end of status and report ==============================================================
