"""The client's per-second timeline (requests, 429s, ids): what a manifest keeps for the
report's charts. Counted on a fake clock; bounded by construction, not by timing."""

from __future__ import annotations

import json
import random

from tmdb_async.tmdb.client import (
    TIMELINE_POINTS,
    ClientStats,
    Timeline,
    decode_counts,
    encode_counts,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.4) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_events_are_counted_in_the_second_they_happen_from_the_first_one() -> None:
    clock = Clock()
    line = Timeline(clock=clock)
    assert line.as_dict() is None  # nothing happened: nothing to keep
    line.add("requests")
    line.add("requests")
    clock.now += 2.0
    line.add("requests")
    line.add("throttled")
    line.add("ids", 3)
    assert line.as_dict() == {
        "t0": "2023-11-14T22:13:20Z",
        "step": 1,
        "requests": "2,0,1",
        "throttled": "0*2,1",
        "ids": "0*2,3",
    }


def test_counts_read_back_as_written_and_runs_of_equal_values_are_short() -> None:
    for counts in ([], [0], [5, 5, 5], [0, 0, 0, 5, 7, 7], [12, 0, 12, 12, 40]):
        assert decode_counts(encode_counts(counts)) == counts
    assert encode_counts([0, 0, 0, 5, 7, 7]) == "0*3,5,7*2"
    assert encode_counts([40] * 3600) == "40*3600"
    for bad in ("x", "1*0", "-1", "1,,2"):
        try:
            decode_counts(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read as counts")


def test_a_4_hour_run_keeps_at_most_its_points_by_merging_buckets_and_loses_no_event() -> None:
    """14,400 s at ~40 requests/s: the buckets double until they fit, the sums stay exact,
    and the manifest's field stays a few KB (points x the digits of a bucket, by design)."""
    clock, rng = Clock(), random.Random(7)
    line = Timeline(clock=clock)
    sent = throttled = 0
    for _ in range(14_400):
        for _ in range(rng.randint(35, 45)):
            line.add("requests")
            line.add("ids")
            sent += 1
        if rng.random() < 0.01:
            line.add("throttled")
            throttled += 1
        clock.now += 1.0
    kept = line.as_dict()
    assert kept is not None and kept["step"] == 16
    series = {n: decode_counts(kept[n]) for n in ("requests", "throttled", "ids")}
    assert all(len(s) == 900 <= TIMELINE_POINTS for s in series.values())
    assert sum(series["requests"]) == sum(series["ids"]) == sent
    assert sum(series["throttled"]) == throttled
    # A bucket holds at most 45 x 16 = 720 events: 3 digits and a comma, in 3 series.
    assert len(json.dumps(kept)) <= 100 + 3 * 900 * 4  # measured: 7,883 bytes


def test_client_stats_hold_a_timeline_and_keep_it_out_of_their_totals() -> None:
    stats = ClientStats()
    assert isinstance(stats.timeline, Timeline)
    assert "timeline" not in stats.as_dict()  # the manifest's own field, not the tmdb totals
