#!/usr/bin/env bash
# The main job on the bundled sample, offline: a fake TMDB on loopback (40 requests/s,
# 20 connections, 30 ms latency, like the real one), the engine writing into ./out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-out}"
TOKEN="demo-read-access-token"
port_file="$(mktemp)"
rm -f "$port_file"

"$PY" -m tmdb_devtools fake-tmdb --port 0 --port-file "$port_file" --token "$TOKEN" \
  --latency 0.03 --rate-limit 40 --max-connections 20 >/dev/null &
fake_pid=$!
trap 'kill "$fake_pid" 2>/dev/null || true; rm -f "$port_file"' EXIT

for _ in $(seq 1 100); do  # wait (at most 10 s) for the fake to say which port it took
  [ -s "$port_file" ] && break
  kill -0 "$fake_pid" 2>/dev/null || { echo "fake TMDB did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$port_file" ] || { echo "fake TMDB did not start within 10 s" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$port_file")"

export TMDB_READ_ACCESS_TOKEN="$TOKEN"
echo "== movies: samples/movies.csv -> $OUT (fake TMDB at $url)"
"$PY" -m tmdb_async run samples/movies.csv --dest "$OUT" --kind movie --tmdb-url "$url"
echo "== series: samples/series.csv -> $OUT"
"$PY" -m tmdb_async run samples/series.csv --dest "$OUT" --kind tv --tmdb-url "$url"

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
