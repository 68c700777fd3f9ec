"""Served marks: which captchas of a pool platforms have shown, so that a pool's unused count means something.

pools/<pool>/served/<batch>.txt   ids of captchas a platform served, one a line; <batch> = hash of those lines

A pool's unused captchas are its complete ones minus the served ones; the refill (farm.ops.refill)
keeps that above a floor. Why objects in the store rather than a Redis set:
- platforms already hold the store (they draw and verify from it) and need no farm service to mark;
- the store is durable: a flushed Redis would make every pool look unused, and nothing would refill;
- each batch is a new object named by its content, so no writer ever rewrites a shared file (no
  lost update between platform processes, on S3 as on a folder), and marking the same ids twice
  writes the same object again.
Counting reads every batch, so the refill compacts them into one when they pile up. Batches hold
captcha ids only (public already: they name the images), never answers or user data; keep them
with keys/ on the back-end side all the same.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

from farm.storage.layout import check_pool_name
from farm.storage.store import Store
from farm.exceptions import SettingError

__all__ = ["served_prefix", "mark_served", "served_batches", "read_served", "compact_served", "COMPACT_AFTER"]

log = logging.getLogger(__name__)
READ_THREADS = 8  # object stores answer one GET at a time per connection; a few in flight hide the latency
COMPACT_AFTER = 64  # batches of a pool before the refill folds them into one (counting GETs every batch)
_HEX = set("0123456789abcdef")


def served_prefix(pool: str) -> str:
    return f"pools/{check_pool_name(pool)}/served/"


def _check_ids(ids) -> list[str]:
    if isinstance(ids, str):
        raise SettingError("ids: a list of captcha ids, not one string")
    ids = sorted(set(ids))
    bad = [i for i in ids if not isinstance(i, str) or len(i) != 32 or not set(i) <= _HEX]
    if bad:
        raise SettingError(f"ids: {str(bad[0])[:40]!r} is not a captcha id (32 hex characters)")
    return ids


def mark_served(store: Store, pool: str, ids) -> str | None:
    """Record captchas of `pool` as served, as one new batch; returns its key (None for no ids).

    The caller vouches that the ids belong to the pool (farm.ops.client.PoolClient.served checks them).
    """
    ids = _check_ids(ids)
    if not ids:
        return None
    body = "".join(f"{i}\n" for i in ids).encode()
    key = f"{served_prefix(pool)}{hashlib.sha256(body).hexdigest()[:32]}.txt"
    store.put(key, body, content_type="text/plain")
    return key


def served_batches(store: Store, pool: str) -> list[str]:
    """Keys of a pool's served batches (one listing)."""
    return [k for k in store.list(served_prefix(pool)) if k.endswith(".txt")]


def read_served(store: Store, pool: str, skip=frozenset(), batches: list[str] | None = None) -> dict[str, list[str]]:
    """{batch key: ids} of the pool's batches not in `skip`; a batch compacted away meanwhile is left out."""
    keys = [k for k in (served_batches(store, pool) if batches is None else batches) if k not in skip]

    def read(key: str) -> list[str] | None:
        try:
            return store.get(key).decode().split()
        except KeyError:  # folded into a compacted batch since the listing: the next listing shows that one
            return None

    with ThreadPoolExecutor(READ_THREADS) as threads:
        found = dict(zip(keys, threads.map(read, keys)))
    return {k: v for k, v in found.items() if v is not None}


def compact_served(store: Store, pool: str, batches: dict[str, list[str]]) -> str | None:
    """Fold `batches` (as read_served returned them) into one batch, then delete them; returns its key.

    The union is written before anything is deleted, so a reader sees every id at any moment (some
    twice, which a set absorbs). Batches written after the listing are not touched.
    """
    if len(batches) < 2:
        return None
    key = mark_served(store, pool, {i for ids in batches.values() for i in ids})
    for old in batches:
        if old != key:
            store.delete(old)
    log.info("pool %s: %d served batches compacted into %s", pool, len(batches), key)
    return key
