"""Generation jobs of the farm: one record per job in the store, progress read from the pool itself.

jobs/<id>/job.json              pool, spec, shard count, substitute (pinned or following CURRENT), created; no answers, no secrets
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

__all__ = ["Substitute", "PINNED", "FOLLOWS_CURRENT", "create", "load", "progress", "record_failure", "finish", "READ_THREADS"]

READ_THREADS = 8  # object stores answer one GET at a time per connection; a few in flight hide the latency
_ID = re.compile(r"[0-9a-f]{12}")


PINNED, FOLLOWS_CURRENT = "pinned", "current"


@dataclass(frozen=True)
class Substitute:
    """The checkpoint a job generates with: its version and sha256, and whether its workers keep to it.

    `follows`: pinned, every shard is made with exactly this version (loaded from the registry,
    sha256-checked), or current, each shard with checkpoints/CURRENT when it starts (a version
    promoted mid-job reaches the shards after it); the version is then CURRENT's at submission.
    The job record and every shard's task message carry it; a manifest keeps version and sha256.
    """

    version: str
    sha256: str
    follows: str = FOLLOWS_CURRENT

    def to_dict(self) -> dict:
        return {"version": self.version, "sha256": self.sha256, "follows": self.follows}

    @classmethod
    def from_dict(cls, data) -> Substitute:
        """A task's or a record's substitute; ValueError names what does not fit (records before pinning follow CURRENT)."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k] for k in ("version", "sha256")):
            raise ValueError(f"substitute: must be {{version, sha256, follows}} of a published checkpoint (got {data!r})")
        follows = data.get("follows", FOLLOWS_CURRENT)
        if follows not in (PINNED, FOLLOWS_CURRENT):
            raise ValueError(f"substitute: follows is {follows!r}, neither {PINNED!r} nor {FOLLOWS_CURRENT!r}")
        return cls(data["version"], data["sha256"], follows)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _key(job_id: str, name: str = "job.json") -> str:
    if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
        raise SettingError(f"job: {job_id!r} is not a job id (12 hex digits, as `farm generate --no-wait` prints)")
    return f"jobs/{job_id}/{name}"


def create(store: Store, pool: str, spec: PoolSpec, substitute: Substitute, shards: list[int]) -> dict:
    """Write the record of a new job that queues `shards` of a pool; returns it."""
    record = {"id": uuid.uuid4().hex[:12], "pool": pool, "spec": spec.to_dict(), "shard_count": spec.shards,
              "queued": shards, "substitute": substitute.to_dict(),
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
    manifest = write_manifest(store, pool, spec, Substitute.from_dict(record["substitute"]), status="complete",
                              shard_substitutes=per_shard, seeded=record.get("derivation", UNKEYED))
    return manifest, [r for rows in shards for r in rows]
