"""The producer: `farm generate` with FARM_BROKER set shards a pool onto the generate queue and follows it.

Only shards not yet complete are queued, in order. Progress is read from the store (a shard is
complete when its keys file exists), never from the broker, so following a job, re-running the
same `farm generate` and `farm job status` all agree, whoever runs them and whenever.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from tqdm import tqdm

from farm.storage import jobs, registry
from farm.core.checkpoint import Solver
from farm.storage.config import secret
from farm.exceptions import JobError
from farm.ops.submit import check_spec_matches
from farm.core.spec import PoolSpec
from farm.storage.layout import check_pool_name
from farm.storage.manifest import pending_shards, write_manifest
from farm.storage.store import Store

__all__ = ["generate_on_farm", "follow", "refill_on_farm"]

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # one LIST of keys/ and one of the job's failures per poll
# publishing retries: a broker restarting is waited for; a broker that is down fails in about 10 s
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 3}


def generate_on_farm(store: Store, pool: str, spec: PoolSpec, solver: Solver | jobs.Substitute, wait: bool = True,
                     progress: bool = True, grow: bool = False) -> dict:
    """Queue the incomplete shards of a pool; with `wait`, follow them and write the manifest.

    `solver` is what `farm generate` resolved (or just its version and sha256: the refill has no
    model); the workers use checkpoints/CURRENT, so it must be that. `grow`: `spec` may hold more
    captchas than the pool's manifest (farm.ops.submit.check_spec_matches).
    """
    check_pool_name(pool)
    spec.validate()
    check_spec_matches(store, pool, spec, grow=grow)
    pointer = registry.current(store)
    if pointer is None or pointer["sha256"] != solver.sha256:
        raise JobError(f"--checkpoint: the farm's workers generate with checkpoints/CURRENT "
                       f"({(pointer or {}).get('version')}), not with {solver.version}; publish and promote that "
                       f"checkpoint first (`farm checkpoint --help`), or drop --checkpoint")
    secret(store)  # a shared store without FARM_SECRET is refused here, before anything is queued
    _connect()  # an unreachable broker, too
    write_manifest(store, pool, spec, solver, status="generating")
    todo = pending_shards(store, pool, spec)
    record = jobs.create(store, pool, spec, jobs.Substitute(pointer["version"], pointer["sha256"]), todo)
    _enqueue(record, spec, todo)
    log.info("job %s: queued %d shards of pool %s", record["id"], len(todo), pool)
    if not wait:
        return {"job": record["id"], "pool": pool, "store": store.url, "count": spec.count,
                "queued_shards": len(todo), "shards": spec.shards, "waited": False}
    return follow(store, record, progress)


def refill_on_farm(store: Store, floor: int, pools: list[str] | None = None) -> list[dict]:
    """farm.ops.refill.refill with the farm generating: each grown pool's new shards are queued as a job (no wait).

    The refill loads no model: the workers generate with CURRENT, whose version and sha256 the
    manifest names (the bundled substitute is published as v1 on a store without one).
    """
    from farm.ops.refill import refill

    pointer = registry.ensure_current(store)
    substitute = jobs.Substitute(pointer["version"], pointer["sha256"])

    def grow(pool: str, spec: PoolSpec) -> dict:
        return generate_on_farm(store, pool, spec, substitute, wait=False, progress=False, grow=True)

    return refill(store, floor, grow, pools)


def _unreachable(e: Exception, what: str) -> JobError:
    return JobError(f"FARM_BROKER: cannot reach {maybe_sanitize_url(os.environ.get('FARM_BROKER', ''))} ({e}); "
                    f"start the broker or fix FARM_BROKER, then run the same `farm generate` again ({what})")


def _connect() -> None:
    from workers.app import app  # Celery only here: the embedded path never imports it

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(**PUBLISH_RETRY)
    except OperationalError as e:
        raise _unreachable(e, "nothing was queued") from e


def _enqueue(record: dict, spec: PoolSpec, shards: list[int]) -> None:
    from workers.app import GENERATE_SHARD, app

    sent = 0
    try:
        with app.producer_or_acquire() as producer:  # one connection for every shard
            for shard in shards:
                app.send_task(GENERATE_SHARD, args=[record["pool"], shard, len(spec.indices(shard)), spec.to_dict()],
                              kwargs={"job": record["id"]}, producer=producer, retry=True, retry_policy=PUBLISH_RETRY)
                sent += 1
    except OperationalError as e:
        raise _unreachable(e, f"{sent} of {len(shards)} shards of job {record['id']} were queued") from e


def follow(store: Store, record: dict, progress: bool = True) -> dict:
    """Wait until every shard is complete (a progress bar on stderr), write the manifest, summarise."""
    job_id, spec = record["id"], PoolSpec.from_dict(record["spec"])
    started = time.perf_counter()
    status = jobs.progress(store, record)
    bar = tqdm(total=spec.count, initial=status["complete"], desc=f"job {job_id}", unit="captcha",
               disable=not progress, dynamic_ncols=True)
    try:
        while status["state"] == "running":
            time.sleep(POLL_SECONDS)
            status = jobs.progress(store, record)
            bar.update(status["complete"] - bar.n)
    except KeyboardInterrupt:
        raise JobError(f"stopped following; job {job_id} goes on in the farm: `farm job status {job_id}`") from None
    finally:
        bar.close()
    if status["state"] == "failed":
        first = status["failed"][0]
        raise JobError(f"job {job_id}: shard {first['shard']} gave up on {first['worker']}: {first['error']}; "
                       f"the other shards go on; fix the cause and run the same `farm generate` again "
                       f"(complete shards are skipped)")
    manifest, records = jobs.finish(store, record)
    return summarise(record, manifest, records, time.perf_counter() - started, store.url)


def summarise(record: dict, manifest: dict, records: list[dict], seconds: float, store_url: str) -> dict:
    """The closing summary of `farm generate`, with the keys of the embedded one (stage seconds: see metrics)."""
    queued = set(record["queued"])
    mine = [r for r in records if r["shard"] in queued]
    n = len(mine)

    def mean(name: str, digits: int):
        return round(sum(r[name] for r in mine) / n, digits) if n else None

    return {"job": record["id"], "pool": record["pool"], "store": store_url, "count": manifest["complete"],
            "generated": n, "skipped_shards": record["shard_count"] - len(queued), "seconds": round(seconds, 2),
            "captchas_per_second": round(n / seconds, 2) if n and seconds else 0.0,
            "substitute": record["substitute"]["version"],
            "substitutes": dict(Counter(r["substitute"] for r in mine)),
            "substitute_accuracy_clean": round(sum(r["reading_clean"] == r["answer"] for r in mine) / n, 4) if n else None,
            "substitute_accuracy_adversarial": round(sum(r["reading"] == r["answer"] for r in mine) / n, 4) if n else None,
            "mean_ssim": mean("ssim", 4), "mean_linf": mean("linf", 5), "waited": True}
