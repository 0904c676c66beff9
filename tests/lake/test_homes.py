"""The ledger's compact id → home map behaves exactly like a dict of strings."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmdb_async.lake.homes import Home, HomeIndex

HOMES = [Home(f"m-{n:08d}-00.json", o, "s") for n in range(4) for o in ("record", "failed")]
keys = st.one_of(
    st.integers(0, 2 * 10**8).map(lambda n: f"tt{n:07d}"),  # canonical ids
    st.sampled_from(["tt12", "\\N", "TT0133093", "tt01000001", "abc…sha256:0123456789abcdef"]),
)


@settings(max_examples=200)
@given(st.lists(st.tuples(keys, st.sampled_from(HOMES)), max_size=200))
def test_it_answers_like_a_dict_whatever_is_set_in_any_order(
    writes: list[tuple[str, Home]],
) -> None:
    index, model = HomeIndex(), {}
    index.MERGE_AT = 5  # type: ignore[misc]  # merge often: the sorted columns get exercised
    for key, home in writes:
        index.set(key, home)
        model[key] = home
        assert index.get(key) is home
    assert dict(index.items()) == model
    assert len(index) == len(model)
    assert all(index.get(k) is model[k] for k in model)
    assert index.get("tt9999999") is model.get("tt9999999")
    rebuilt = {}
    for home, numbers, others in index.groups():
        rebuilt.update({f"tt{n:07d}": home for n in numbers})
        rebuilt.update(dict.fromkeys(others, home))
    assert rebuilt == model


def test_a_hundred_thousand_ids_cost_about_sixteen_bytes_each() -> None:
    tracemalloc.start()
    index = HomeIndex()
    for n in range(100_000):
        index.set(f"tt{3_000_000 + n:07d}", HOMES[n % 8])
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(index) == 100_000
    assert size < 100_000 * 40  # a dict of strings would be ~110 bytes per id


def test_a_missing_id_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        HomeIndex()["tt0133093"]
