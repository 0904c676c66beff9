"""The fleet: how a Distributed Map splits one source into batches that share TMDB's rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tmdb_async.errors import UsageError
from tmdb_async.settings import AT_LEAST_1, MIN_RATE, TMDB_MAX_CONNECTIONS


def fleet_share(values: dict[str, Any]) -> dict[str, Any]:
    """Replace ``global_rate`` / ``max_concurrency`` of a batch by this invocation's share of
    them (an explicit ``rate`` or ``concurrency`` in the batch wins)."""
    global_rate = values.pop("global_rate", None)
    fleet = values.pop("max_concurrency", None)
    if global_rate is not None:
        share = global_rate / (fleet or 1)
        if "rate" not in values and share < MIN_RATE:
            raise UsageError(
                f"global_rate: {global_rate:g} requests/s over max_concurrency {fleet} is "
                f"{share:g} each, below {MIN_RATE:g}"
            )
        values.setdefault("rate", share)
    if fleet:
        values.setdefault("concurrency", max(1, TMDB_MAX_CONNECTIONS // fleet))
    return values


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """How the Distributed Map splits ``ids`` distinct ids (see :func:`plan_batches`)."""

    ids: int
    items_per_batch: int  #: the ItemBatcher's MaxItemsPerBatch: consecutive slices this long
    batches: int  #: ``ceil(ids / items_per_batch)`` child workflows
    children: int  #: how many run at once: the Map's MaxConcurrency and each batch's share

    def as_dict(self) -> dict[str, int]:
        return {
            "items_per_batch": self.items_per_batch,
            "batches": self.batches,
            "children": self.children,
        }


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def plan_batches(ids: int, max_items_per_batch: int, max_concurrency: int) -> BatchPlan:
    """Batches that keep the whole global rate busy, whatever the file's size.

    Each running child gets ``global_rate / children`` (:func:`fleet_share`), so a child that
    has no batch wastes its share: with 500 ids a batch and 4 children, a 241-id file would
    run as one batch at a quarter of the rate. The plan therefore asks for a number of
    batches that is a multiple of ``max_concurrency`` (every round of children is full, the
    last included), at least one round and at most one id a batch, with no batch above
    ``max_items_per_batch``::

        wanted = max_concurrency * ceil(ceil(ids / max_items_per_batch) / max_concurrency)
        items_per_batch = ceil(ids / min(ids, wanted))
        batches = ceil(ids / items_per_batch)        # the ItemBatcher's slices
        children = min(max_concurrency, batches)

    Slices of one length cannot always make ``wanted`` batches (9 ids for 4 children: 3 a
    batch make 3 batches); ``children`` is then the batches there are, each at a third of
    the rate, so the rate is still used in full. What stays idle is only the shorter last
    slice's share once it is done: fewer than ``max(items_per_batch, children)`` id-slots of
    ``ids``. Continuations of a batch (the ``remaining_items`` loop) keep its share, so the
    fleet never runs above the global rate.
    """
    if ids < 0:
        raise UsageError(f"ids: {ids} must not be negative")
    AT_LEAST_1.check(max_items_per_batch, "max_items_per_batch")
    AT_LEAST_1.check(max_concurrency, "max_concurrency")
    if ids == 0:
        return BatchPlan(0, max_items_per_batch, 0, 0)
    rounds = _ceil_div(_ceil_div(ids, max_items_per_batch), max_concurrency)
    wanted = min(ids, max_concurrency * rounds)
    items_per_batch = _ceil_div(ids, wanted)
    batches = _ceil_div(ids, items_per_batch)
    return BatchPlan(ids, items_per_batch, batches, min(max_concurrency, batches))
