"""The platform's side of a pool: draw a captcha to show, verify what the user typed.

Runs in the platform back end, which may read the private keys/: a pool's answers are loaded
once into memory and refreshed when new shards appear, so a verify costs no store request.

    client = PoolClient("s3://captchas/prod")
    shown = client.draw("signup-v3")            # shown.id, shown.url (presigned on S3), shown.png
    client.verify("signup-v3", shown.id, typed)  # True / False
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from farm.exceptions import PoolError
from farm.pool import (answer_matches, check_pool_name, complete_shards, image_key, keys_key, list_pools,
                       pool_charset, read_manifest, read_shard_keys)
from farm.store import LocalStore, Store, open_store

__all__ = ["PoolClient", "Drawn", "Verdict"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drawn:
    """A captcha to show: its id, where to fetch it, and its bytes when fetched."""

    id: str
    url: str
    png: bytes | None = None


@dataclass(frozen=True)
class Verdict:
    """The outcome of a verify; `reason` is for logs, never for the user (it would help an attacker)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class _Index:
    """What the client knows of one pool: ids, their answers, the charset; refreshed by shard."""

    charset: object
    answers: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    shards: set[int] = field(default_factory=set)
    checked: float = 0.0


class PoolClient:
    """Draw and verify captchas of the pools in a store.

    Arguments:
        store: a store URL (file:///path, s3://bucket/prefix; default FARM_STORE) or a Store.
        max_age: seconds before the client looks for shards completed since it loaded a pool (Default: 60).
        link_expires: lifetime of presigned URLs in seconds (Default: 300).
    """

    def __init__(self, store: str | Store | None = None, max_age: float = 60.0, link_expires: int = 300):
        self.store = store if isinstance(store, Store) else open_store(store)
        self.max_age = max_age
        self.link_expires = link_expires
        self._pools: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def list(self) -> list[dict]:
        """Pools with their counts and spec summary."""
        return list_pools(self.store)

    def _index(self, pool: str, force: bool = False) -> _Index:
        check_pool_name(pool)
        with self._lock:
            index = self._pools.get(pool)
            if index is None:
                index = _Index(pool_charset(read_manifest(self.store, pool)))  # PoolError when unknown
                self._pools[pool] = index
            if force or time.monotonic() - index.checked > self.max_age or not index.ids:
                self._load_new_shards(pool, index)
            return index

    def _load_new_shards(self, pool: str, index: _Index) -> None:
        for shard in complete_shards(self.store, pool):
            if shard in index.shards:
                continue
            for record in read_shard_keys(self.store, keys_key(pool, shard)):
                index.answers[record["id"]] = record["answer"]
                index.ids.append(record["id"])
            index.shards.add(shard)
        index.checked = time.monotonic()

    def draw(self, pool: str, fetch: bool | None = None) -> Drawn:
        """A uniformly random captcha of a pool (unpredictable: secrets, not random).

        On S3 the url is presigned and the bytes are not fetched unless `fetch`; on a local
        store the bytes come along (there is nothing to hand a browser but a file URL).
        """
        index = self._index(pool)
        if not index.ids:
            raise PoolError(f"pool: {pool!r} has no complete shard yet; wait for `farm generate` to finish one")
        cid = secrets.choice(index.ids)
        key = image_key(pool, cid)
        fetch = isinstance(self.store, LocalStore) if fetch is None else fetch
        return Drawn(cid, self.store.link(key, self.link_expires), self.store.get(key) if fetch else None)

    def image(self, pool: str, cid: str) -> bytes:
        """The PNG of a captcha id."""
        check_pool_name(pool)
        try:
            return self.store.get(image_key(pool, _check_id(cid)))
        except KeyError:
            raise PoolError(f"captcha id: {cid!r} is not in pool {pool!r}") from None

    def check(self, pool: str, cid: str, answer: str) -> Verdict:
        """Whether `answer` reads captcha `cid`, and why not. Unknown pools raise PoolError."""
        index = self._index(pool)
        truth = index.answers.get(cid) if isinstance(cid, str) else None
        # perhaps from a shard completed since the last look; at most one look per second
        if truth is None and isinstance(cid, str) and _valid_id(cid) and time.monotonic() - index.checked > 1.0:
            truth = self._index(pool, force=True).answers.get(cid)
        if truth is None:
            return Verdict(False, f"unknown captcha id {str(cid)[:40]!r} in pool {pool!r}")
        if answer_matches(index.charset, truth, answer):
            return Verdict(True, "correct")
        return Verdict(False, "wrong answer")

    def verify(self, pool: str, cid: str, answer: str) -> bool:
        """True when `answer` reads captcha `cid` (constant-time, case rule of the scheme's charset)."""
        return self.check(pool, cid, answer).ok


def _valid_id(cid: str) -> bool:
    return len(cid) == 32 and all(c in "0123456789abcdef" for c in cid)


def _check_id(cid: str) -> str:
    if not isinstance(cid, str) or not _valid_id(cid):
        raise ValueError(f"captcha id: {str(cid)[:40]!r} is not a captcha id (32 hex characters)")
    return cid
