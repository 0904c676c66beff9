"""The saved refresh plan: typed in memory, its JSON form the one plans already saved in
lakes have, so a refresh cut off by an earlier version continues with this one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tmdb_async.jobs.refresh import Group, Plan, Window
from tmdb_async.jobs.refresh.plan import PagesRead
from tmdb_async.lake.profile import Profile
from tmdb_async.lake.storage import LocalStore

DATE = dt.date(2026, 11, 20)

#: Written by ``Plan.save`` of the module ``tmdb_async/jobs/refresh.py`` before it became a
#: package (commit afc53c2), when groups were dicts read by their keys.
OLD_PLAN = (
    '{"date": "2026-11-20", "window": {"start": "2026-11-01", "end": "2026-11-19"}, '
    '"carried": ["tt0000009"], "done": [["movie", "2026-11-01", "2026-11-14"]], '
    '"selected": ["tt0000001", "tt0000002", "tt0000003"], "changed": {"movie": 120, "tv": 7}, '
    '"truncated": [{"kind": "movie", "start": "2026-11-03", "end": "2026-11-03", '
    '"total_pages": 612, "total_results": 61200, "pages_read": 500}], '
    '"groups": [{"profile": {"kind": "movie", "detail": "full", "language": "pt-BR", '
    '"append_to_response": ["credits", "keywords"], "output_format": "json"}, '
    '"media_type": null, "ids": ["tt0000001", "tt0000003"]}, '
    '{"profile": null, "media_type": "tv", "ids": ["tt0000002"]}], "odd_items": 2, '
    '"pages": {"tv/2026-11-15/2026-11-19": {"total": 4, "read": [1, 2, 4]}}}'
)


async def test_a_plan_saved_by_the_old_module_loads_typed_and_saves_the_same_bytes(
    tmp_path: Path,
) -> None:
    store = LocalStore(str(tmp_path))
    (tmp_path / Plan.key(DATE)).parent.mkdir(parents=True)
    (tmp_path / Plan.key(DATE)).write_text(OLD_PLAN)
    plan = await Plan.load(store, DATE)
    assert plan is not None
    assert plan.window == Window(dt.date(2026, 11, 1), dt.date(2026, 11, 19))
    assert plan.groups == [
        Group(
            Profile("movie", "full", "pt-BR", ("credits", "keywords"), "json"),
            None,
            ("tt0000001", "tt0000003"),
        ),
        Group(None, "tv", ("tt0000002",)),
    ]
    assert plan.pages == {"tv/2026-11-15/2026-11-19": PagesRead(4, (1, 2, 4))}
    assert plan.done == [("movie", "2026-11-01", "2026-11-14")]
    assert list(plan.titles) == ["tt0000001", "tt0000003", "tt0000002"]
    still = [(kind, w.start.day) for kind, w in plan.pieces()]
    assert still == [("movie", 15), ("tv", 1), ("tv", 15)]  # movie 1..14 is done
    await plan.save(store)
    assert (tmp_path / Plan.key(DATE)).read_text() == OLD_PLAN


async def test_a_plan_saved_before_odd_items_and_pages_were_kept_loads(tmp_path: Path) -> None:
    body = json.loads(OLD_PLAN)
    del body["odd_items"], body["pages"]
    body["groups"] = None
    (tmp_path / Plan.key(DATE)).parent.mkdir(parents=True)
    (tmp_path / Plan.key(DATE)).write_text(json.dumps(body))
    plan = await Plan.load(LocalStore(str(tmp_path)), DATE)
    assert plan is not None and plan.groups is None
    assert (plan.odd_items, plan.pages) == (0, {})


async def test_a_group_with_neither_profile_nor_kind_is_a_damaged_plan(tmp_path: Path) -> None:
    body = json.loads(OLD_PLAN)
    body["groups"][1]["media_type"] = None
    (tmp_path / Plan.key(DATE)).parent.mkdir(parents=True)
    (tmp_path / Plan.key(DATE)).write_text(json.dumps(body))
    assert await Plan.load(LocalStore(str(tmp_path)), DATE) is None


async def test_a_plan_keeps_the_way_it_took_and_a_plan_saved_before_has_none(
    tmp_path: Path,
) -> None:
    """The way a refresh went is saved with its plan, so a refresh cut off goes on the
    same way; a plan saved before ways existed loads undecided."""
    store = LocalStore(str(tmp_path))
    (tmp_path / Plan.key(DATE)).parent.mkdir(parents=True)
    (tmp_path / Plan.key(DATE)).write_text(OLD_PLAN)
    plan = await Plan.load(store, DATE)
    assert plan is not None and (plan.mode, plan.reason) == (None, None)
    plan.mode, plan.reason = "whole_lake", "3 titles < 40 remaining list pages"
    await plan.save(store)
    again = await Plan.load(store, DATE)
    assert again is not None
    assert (again.mode, again.reason) == ("whole_lake", "3 titles < 40 remaining list pages")
    body = json.loads(OLD_PLAN)
    body["mode"] = "by_guess"
    (tmp_path / Plan.key(DATE)).write_text(json.dumps(body))
    assert await Plan.load(store, DATE) is None  # damaged: started again
