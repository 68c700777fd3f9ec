"""Generation jobs of the farm: one record per job in the store, progress read from the pool itself.

jobs/<id>/job.json              pool, spec, shard count, substitute at submission, created; no answers, no secrets
jobs/<id>/failed/<shard>.json   why a shard's task gave up (written by the worker, read by the producer)

The store, not the broker, holds job state: `farm job status` needs the store anyway (a shard is
complete when its keys file exists), it works behind any broker (Redis or RabbitMQ), and it
survives a flushed or restarted Redis. Platforms never read jobs/; it is operators' bookkeeping.
No Celery here: `farm job status` runs without it.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from farm.exceptions import JobError, SettingError
from farm.core.spec import PoolSpec
from farm.storage.manifest import complete_shards, write_manifest
from farm.storage.layout import keys_key
from farm.storage.pools import read_shard_keys
from farm.core.seeds import KEYED, UNKEYED
from farm.storage.store import Store

__all__ = ["Substitute", "create", "load", "progress", "record_failure", "finish", "READ_THREADS"]

READ_THREADS = 8  # object stores answer one GET at a time per connection; a few in flight hide the latency
_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class Substitute:
    """The version and sha256 of a checkpoint: all a manifest says of the solver that made a shard."""

    version: str
    sha256: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _key(job_id: str, name: str = "job.json") -> str:
    if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
        raise SettingError(f"job: {job_id!r} is not a job id (12 hex digits, as `farm generate --no-wait` prints)")
    return f"jobs/{job_id}/{name}"


def create(store: Store, pool: str, spec: PoolSpec, substitute: Substitute, shards: list[int]) -> dict:
    """Write the record of a new job that queues `shards` of a pool; returns it."""
    record = {"id": uuid.uuid4().hex[:12], "pool": pool, "spec": spec.to_dict(), "shard_count": spec.shards,
              "queued": shards, "substitute": {"version": substitute.version, "sha256": substitute.sha256},
              "derivation": KEYED, "created": _now()}
    store.put(_key(record["id"]), json.dumps(record, indent=2, sort_keys=True).encode(),
              content_type="application/json")
    return record


def load(store: Store, job_id: str) -> dict:
    try:
        return json.loads(store.get(_key(job_id)))
    except KeyError:
        raise JobError(f"job: {job_id} is not in {store.url}; check FARM_STORE (jobs live beside their pool)") from None


def record_failure(store: Store, job_id: str, shard: int, error: str, worker: str) -> None:
    """Say why a shard's task gave up, so the producer stops waiting and tells the operator."""
    body = {"shard": shard, "error": error, "worker": worker, "time": _now()}
    store.put(_key(job_id, f"failed/{shard:05d}.json"), json.dumps(body, sort_keys=True).encode(),
              content_type="application/json")


def progress(store: Store, record: dict) -> dict:
    """How far a job is: complete shards and captchas (from keys files), and shards that failed."""
    spec = PoolSpec.from_dict(record["spec"])
    done = [s for s in complete_shards(store, record["pool"]) if s < spec.shards]
    failed = []
    for key in store.list(_key(record["id"], "failed/")):
        failure = json.loads(store.get(key))
        if failure["shard"] not in done:  # a later attempt (or re-run) completed it
            failed.append(failure)
    state = "complete" if len(done) == spec.shards else ("failed" if failed else "running")
    return {"job": record["id"], "pool": record["pool"], "state": state, "count": spec.count,
            "complete": sum(len(spec.indices(s)) for s in done), "shards": spec.shards,
            "shards_complete": len(done), "failed": failed, "created": record["created"]}


def finish(store: Store, record: dict) -> tuple[dict, list[dict]]:
    """Write the complete manifest of a finished job; returns it with every key record (private: answers).

    The manifest names the substitute CURRENT was at submission, and per shard the one that really
    made it (a checkpoint promoted mid-job is used by the shards that start after it).
    """
    spec = PoolSpec.from_dict(record["spec"])
    pool = record["pool"]
    try:
        with ThreadPoolExecutor(READ_THREADS) as threads:
            shards = list(threads.map(lambda s: read_shard_keys(store, keys_key(pool, s)), range(spec.shards)))
    except KeyError as e:
        raise JobError(f"job {record['id']}: {e.args[0]} is missing; the job is not complete yet") from None
    per_shard = {s: {"version": rows[0]["substitute"], "sha256": rows[0]["substitute_sha256"]}
                 for s, rows in enumerate(shards) if rows}
    manifest = write_manifest(store, pool, spec, Substitute(**record["substitute"]), status="complete",
                              shard_substitutes=per_shard, seeded=record.get("derivation", UNKEYED))
    return manifest, [r for rows in shards for r in rows]
