"""A pool's manifest: its spec, substitute and complete shards, changed only by compare-and-swap.

Many writers (generate runs, workers finishing jobs, the refill) update one manifest; every write
is conditional on the version read, so none overwrites an update it did not see.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from farm.core.checkpoint import Solver
from farm.core.families import method_family
from farm.core.seeds import KEYED, derivation
from farm.core.spec import PoolSpec, scheme_mode
from farm.exceptions import ConflictError, PoolError
from farm.storage import registry
from farm.storage.layout import keys_key, manifest_key
from farm.storage.sources import spec_charset
from farm.storage.store import Store

if TYPE_CHECKING:  # farm.storage.jobs imports this module
    from farm.storage.jobs import Substitute

__all__ = ["read_manifest", "update_manifest", "merged_spec", "write_manifest", "complete_shards", "pending_shards"]

# each conflict means another writer's update landed, so a writer retries at most once per other
# writer's update; 10 outlasts a burst of beat processes, operators and finishing jobs at once
MANIFEST_ATTEMPTS = 10

MANIFEST_BACKOFF_SECONDS = 0.05  # the first retry's longest wait; doubled each time, with jitter, up to 1 s

log = logging.getLogger(__name__)


def read_manifest(store: Store, pool: str) -> dict:
    try:
        return json.loads(store.get(manifest_key(pool)))
    except KeyError:
        raise PoolError(f"pool: {pool!r} does not exist in {store.url}; see `farm pool list`") from None


def update_manifest(store: Store, pool: str, change, attempts: int = MANIFEST_ATTEMPTS) -> dict:
    """Apply `change(old manifest or None) -> new manifest` as a compare-and-swap; returns what was written.

    The write is conditional on the version read (If-Match, or If-None-Match for a new pool), so
    no writer overwrites an update it did not see: on a conflict the manifest is read again and
    `change` applied to it again. `change` must therefore be a function of what it is given (and
    of the store), never of an earlier read, and applying it twice must equal applying it once
    (a write whose answer was lost is retried on top of itself). ConflictError after `attempts`.
    """
    key = manifest_key(pool)
    for attempt in range(attempts):
        try:
            data, etag = store.get_with_etag(key)
        except KeyError:
            data, etag = None, None
        old = _parse_manifest(data, pool) if data is not None else None
        new = change(old)
        body = json.dumps(new, indent=2, sort_keys=True).encode()
        try:
            if etag is None:
                store.put(key, body, if_none_match=True, content_type="application/json")
            else:
                store.put(key, body, if_match=etag, content_type="application/json")
            return new
        except ConflictError:
            log.debug("%s: changed by another writer; applying the change again (attempt %d)", key, attempt + 1)
            time.sleep(random.uniform(0, min(1.0, MANIFEST_BACKOFF_SECONDS * 2 ** attempt)))
    raise ConflictError(f"{key}: other writers changed it before each of {attempts} attempts to update it; nothing "
                        f"was lost (every write is conditional): run the command again")


def _parse_manifest(data: bytes, pool: str) -> dict:
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
            raise ValueError("not an object with a spec")
    except ValueError as e:
        raise PoolError(f"pool: {manifest_key(pool)} is unreadable ({e}); restore it from a backup or export") from e
    return manifest


def merged_spec(pool: str, old: dict, spec: PoolSpec) -> PoolSpec:
    """The spec a stored pool has after a writer asks for `spec`: the larger count; PoolError if anything else differs.

    A count only grows: a writer asking for fewer (a generate finishing while a growth was
    queued) leaves the count another writer raised.
    """
    stored = PoolSpec.from_dict(old["spec"])  # fields added since take their defaults
    fields_stored = stored.to_dict()
    differs = [k for k, v in spec.to_dict().items() if k != "count" and fields_stored.get(k) != v]
    if differs:
        raise PoolError(f"pool: {pool!r} already exists with another spec (differs in {', '.join(differs)}); "
                        f"choose a new --pool name or repeat the original arguments")
    return replace(spec, count=max(spec.count, stored.count))


def write_manifest(store: Store, pool: str, spec: PoolSpec, substitute: Solver | Substitute, status: str,
                   shard_substitutes: dict[int, dict] | None = None, seeded: str = KEYED) -> dict:
    """Update the manifest with what a writer knows (update_manifest); returns it as written.

    The count is the largest any writer asked for (merged_spec); the shards and `complete` are
    read from the store; `status` is complete only when the writer says so and every shard of
    that count is complete. `shard_substitutes` ({shard: {version, sha256}}): the solver of each
    shard, kept from earlier writers for the others. `seeded`: how a new pool's captchas are
    seeded (farm.core.seeds); a stored pool keeps its derivation. The substitute's generation
    (its card's, or for a card from before generations farm.storage.registry.generation) is the
    pool's: None for a model outside the registry. The pool's perturbation family is its method's
    (farm.core.families; None for clean captchas).
    """
    charset = spec_charset(spec, store).to_dict()
    # a loaded Solver or a job's Substitute: only its version and sha256 are read; the generation is the
    # registry's (one card read; a writer writes the manifest two or three times a job)
    named_substitute = {"version": substitute.version, "sha256": substitute.sha256,
                        "generation": registry.generation(store, substitute.version)}

    def change(old: dict | None) -> dict:
        merged = spec if old is None else merged_spec(pool, old, spec)
        named = {s["shard"]: s["substitute"] for s in (old or {}).get("shards", []) if "substitute" in s}
        named.update(shard_substitutes or {})
        shards = []
        for shard in complete_shards(store, pool):
            if shard < merged.shards:
                shards.append({"shard": shard, "count": len(merged.indices(shard)), "keys": keys_key(pool, shard)})
                if shard in named:
                    shards[-1]["substitute"] = named[shard]
        done = status == "complete" and len(shards) == merged.shards
        return {"pool": pool, "spec": merged.to_dict(), "status": "complete" if done else "generating",
                "derivation": seeded if old is None else derivation(old), "charset": charset,
                "substitute": named_substitute,
                "family": method_family(merged.method, merged.dots, scheme_mode(merged.scheme)),
                "count": merged.count, "complete": sum(s["count"] for s in shards),
                "shards": shards, "shard_count": merged.shards,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    return update_manifest(store, pool, change)


def complete_shards(store: Store, pool: str) -> list[int]:
    """Shards whose keys file exists (written last, so complete even while generation goes on)."""
    found = []
    for key in store.list(f"pools/{pool}/keys/"):
        stem = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
        if stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def pending_shards(store: Store, pool: str, spec: PoolSpec) -> list[int]:
    """Shards of a pool still to write (one listing, not a request per shard)."""
    done = set(complete_shards(store, pool))
    return [s for s in range(spec.shards) if s not in done]
