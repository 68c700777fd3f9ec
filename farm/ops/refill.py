"""Pool refill: grow the pools platforms draw from, so that each keeps a floor of unused captchas.

A pool's unused captchas are its complete ones minus those platforms marked served (farm.storage.served).
The refill looks after the active pools (at least one served mark: a pool no platform draws
from is left alone) and any pool named to it. For each it compares what the pool will hold
unused once its pending shards are written, count - served, with the floor, so that a growth
still being generated is not ordered twice. A pool below it grows by whole shards: the same spec
with a larger count, the new shards appended after the stored ones, which are never rewritten
(farm.ops.submit.check_spec_matches refuses a pool ending in a partial shard); a pool of a source
folder grows up to the folder and no further. `generate(pool,
spec)` writes the new shards: a job on the farm's queue following CURRENT (farm.ops.submit.growth_jobs)
or one in this process (`farm pool refill` without FARM_BROKER).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Callable

from farm.storage import jobs
from farm.exceptions import FarmError, SettingError
from farm.core.spec import PoolSpec
from farm.storage.layout import check_pool_name
from farm.storage.manifest import complete_shards, pending_shards, read_manifest
from farm.storage.pools import pool_names
from farm.storage.sources import supply
from farm.core.seeds import derivation
from farm.storage.served import COMPACT_AFTER, compact_served, read_served, served_batches
from farm.storage.store import Store

__all__ = ["Level", "pool_level", "grown_spec", "active_pools", "refill", "refill_floor", "refill_pools_setting"]

log = logging.getLogger(__name__)


def refill_floor(value: int | str | None = None) -> int:
    """The floor: `value`, else FARM_REFILL_MIN; SettingError naming the setting when missing or not a count."""
    value = os.environ.get("FARM_REFILL_MIN") if value is None else value
    if value is None or value == "":
        raise SettingError("FARM_REFILL_MIN: not set; how many unused captchas each pool keeps (or pass --min N)")
    if not str(value).isdigit():
        raise SettingError(f"FARM_REFILL_MIN: {value!r} is not a whole number of captchas")
    return int(value)


def refill_pools_setting() -> list[str] | None:
    """FARM_REFILL_POOLS: pools to look after, comma-separated; unset: every active pool."""
    value = os.environ.get("FARM_REFILL_POOLS", "").strip()
    if not value:
        return None
    return [check_pool_name(name.strip()) for name in value.split(",") if name.strip()]


@dataclass
class Level:
    """Where a pool stands: its manifest, spec, complete and served captchas, served batches read."""

    pool: str
    manifest: dict
    spec: PoolSpec
    complete: int
    served: int
    batches: dict[str, list[str]]

    @property
    def unused(self) -> int:
        return max(0, self.complete - self.served)

    @property
    def to_come(self) -> int:
        """Unused once the pending shards are written."""
        return max(0, self.spec.count - self.served)


def pool_level(store: Store, pool: str) -> Level:
    """A pool's level: one manifest read, a listing of keys/ and of served/, a read of each served batch."""
    manifest = read_manifest(store, check_pool_name(pool))
    spec = PoolSpec.from_dict(manifest["spec"])
    complete = sum(len(spec.indices(s)) for s in complete_shards(store, pool) if s < spec.shards)
    batches = read_served(store, pool)
    served = len({cid for ids in batches.values() for cid in ids})
    return Level(pool, manifest, spec, complete, served, batches)


def grown_spec(spec: PoolSpec, served: int, floor: int) -> PoolSpec | None:
    """The spec with enough whole shards added that count - served reaches the floor; None when it does."""
    missing = served + floor - spec.count
    if missing <= 0:
        return None
    return replace(spec, count=spec.count + math.ceil(missing / spec.shard_size) * spec.shard_size)


def active_pools(store: Store) -> list[str]:
    """Pools platforms draw from: those with at least one served mark."""
    return [pool for pool in pool_names(store) if served_batches(store, pool)]


def _finish(store: Store, level: Level) -> None:
    """A grown pool's manifest says complete once its last shard is (the farm's refill jobs have no follower)."""
    if level.manifest.get("status") == "complete" or pending_shards(store, level.pool, level.spec):
        return
    record = {"id": "refill", "pool": level.pool, "spec": level.manifest["spec"],
              "substitute": level.manifest["substitute"], "derivation": derivation(level.manifest)}
    jobs.finish(store, record)


def refill(store: Store, floor: int, generate: Callable[[str, PoolSpec], dict] | None,
           pools: list[str] | None = None) -> list[dict]:
    """Top up `pools` (default: the active ones) to `floor` unused captchas; one row per pool.

    `generate` None plans only (a dry run). A pool that cannot be grown or fails is reported in
    its row (`skipped`, `error`) and the others go on. Rows: pool, count, complete, served, unused,
    floor, grow_to (the new count, None when the pool is above its floor), added (captchas queued
    or generated), job (the farm's job id), skipped, error.
    """
    if floor < 0:
        raise SettingError(f"floor: must be at least 0 (got {floor})")
    rows = []
    for pool in (active_pools(store) if pools is None else pools):
        row = {"pool": pool, "count": None, "complete": None, "served": None, "unused": None, "floor": floor,
               "grow_to": None, "added": 0, "job": None, "skipped": None, "error": None}
        try:
            level = pool_level(store, pool)
            row.update(count=level.spec.count, complete=level.complete, served=level.served, unused=level.unused)
            if len(level.batches) > COMPACT_AFTER:
                compact_served(store, pool, level.batches)
            _finish(store, level)
            grown = grown_spec(level.spec, level.served, floor)
            if grown is None:
                rows.append(row)
                continue
            most = supply(level.spec, store)
            if most is not None and grown.count > most:  # a source pool: never beyond its folder
                grown = replace(grown, count=max(most, level.spec.count))
            row["grow_to"] = grown.count
            if grown.count == level.spec.count:
                row["skipped"] = (f"holds every captcha of its source folder ({most}); perturb a larger folder "
                                  f"into a new pool (`farm generate --source DIR`)")
            elif level.spec.count % level.spec.shard_size:
                row["skipped"] = (f"ends in a partial shard ({level.spec.count} captchas in shards of "
                                  f"{level.spec.shard_size}); only pools of whole shards grow")
            elif generate is not None:
                summary = generate(pool, grown)
                row.update(added=grown.count - level.spec.count, job=summary.get("job"))
                log.info("pool %s: %d unused to come, floor %d: grown to %d captchas", pool, level.to_come, floor,
                         grown.count)
            if row["skipped"]:
                log.warning("pool %s: below its floor (%d to come, floor %d) but %s", pool, level.to_come, floor,
                            row["skipped"])
        except Exception as e:  # noqa: BLE001 - one pool's failure must not starve the others
            row["error"] = f"{type(e).__name__}: {e}"
            log.error("pool %s: refill failed: %s", pool, e, exc_info=not isinstance(e, (FarmError, ValueError)))
        rows.append(row)
    return rows
