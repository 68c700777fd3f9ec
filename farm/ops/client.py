"""The platform's side of a pool: draw a captcha to show, verify what the user typed.

Runs in the platform back end, which may read the private keys/: a pool's answers are loaded
once into memory and refreshed when new shards appear, so a verify costs no store request.

    client = PoolClient("s3://captchas/prod")
    shown = client.draw("signup-v3")            # shown.id, shown.url (presigned on S3), shown.png
    client.verify("signup-v3", shown.id, typed)  # True / False
    client.served("signup-v3", [shown.id])       # shown: counts as used, drawn again only when none is left

Served marks (farm.storage.served) make a pool's unused count mean something: the farm's refill keeps it
above a floor. A draw prefers captchas not served yet (by this client, or by any other whose marks
it has read: it reads new ones with new shards, every `max_age` seconds).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from farm.exceptions import PoolError, SettingError
from farm.core.charset import answer_matches
from farm.storage.layout import check_pool_name, image_key, keys_key
from farm.storage.manifest import complete_shards, read_manifest
from farm.storage.pools import list_pools, pool_charset, read_shard_keys
from farm.storage.served import mark_served, read_served, served_batches
from farm.storage.store import LocalStore, Store, open_store

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
    """What the client knows of one pool: ids, their answers, the charset; refreshed by shard.

    `unused` holds the ids not served yet, in any order; `position` maps each to its index there, so
    that a served id leaves it in constant time (swapped with the last one).
    """

    charset: object
    answers: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    shards: set[int] = field(default_factory=set)
    served: set[str] = field(default_factory=set)
    batches: set[str] = field(default_factory=set)
    unused: list[str] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    checked: float = 0.0

    def add(self, cid: str, answer: str) -> None:
        self.answers[cid] = answer
        self.ids.append(cid)
        if cid not in self.served:
            self.position[cid] = len(self.unused)
            self.unused.append(cid)

    def serve(self, cid: str) -> None:
        self.served.add(cid)
        at = self.position.pop(cid, None)
        if at is None:
            return
        last = self.unused.pop()
        if last != cid:
            self.unused[at] = last
            self.position[last] = at


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
                index.add(record["id"], record["answer"])
            index.shards.add(shard)
        batches = served_batches(self.store, pool)
        for key, ids in read_served(self.store, pool, skip=index.batches, batches=batches).items():
            for cid in ids:
                index.serve(cid)
        index.batches = set(batches)  # a compacted batch holds what the ones it replaced held
        index.checked = time.monotonic()

    def draw(self, pool: str, fetch: bool | None = None, mark: bool = False) -> Drawn:
        """A uniformly random captcha of a pool, among those not served yet (unpredictable: secrets, not random).

        When every captcha has been served the draw takes any of them (and logs a warning): a pool
        that ran dry serves again rather than failing sign-ups; the farm's alert says it ran dry.
        `mark` marks the drawn captcha served at once (one store write per draw; `served` batches).
        On S3 the url is presigned and the bytes are not fetched unless `fetch`; on a local
        store the bytes come along (there is nothing to hand a browser but a file URL).
        """
        index = self._index(pool)
        if not index.ids:
            raise PoolError(f"pool: {pool!r} has no complete shard yet; wait for `farm generate` to finish one")
        with self._lock:
            if not index.unused:
                log.warning("pool %s: every captcha has been served; drawing served ones again until it is "
                            "refilled (`farm pool refill`)", pool)
            cid = secrets.choice(index.unused or index.ids)
        if mark:
            self.served(pool, [cid])
        key = image_key(pool, cid)
        fetch = isinstance(self.store, LocalStore) if fetch is None else fetch
        return Drawn(cid, self.store.link(key, self.link_expires), self.store.get(key) if fetch else None)

    def draw_distinct(self, pool: str, count: int) -> list[str]:
        """`count` different captcha ids of a pool for one person (fewer when the pool holds fewer).

        A nearly dry pool's draw() returns its last unused captchas again and again; here unused
        ones come first and, when too few are left, served ones fill the rest (with draw()'s warning).
        """
        index = self._index(pool)
        if not index.ids:
            raise PoolError(f"pool: {pool!r} has no complete shard yet; wait for `farm generate` to finish one")
        pick = secrets.SystemRandom()
        with self._lock:
            chosen = pick.sample(index.unused, min(count, len(index.unused)))
            if len(chosen) < count:
                log.warning("pool %s: %d captchas not served yet; drawing served ones again until it is "
                            "refilled (`farm pool refill`)", pool, len(index.unused))
                taken = set(chosen)  # of `count` distinct ids at most len(chosen) are taken: enough remain
                chosen += [cid for cid in pick.sample(index.ids, min(count, len(index.ids)))
                           if cid not in taken][:count - len(chosen)]
        return chosen

    def served(self, pool: str, ids) -> str | None:
        """Mark captchas of a pool as served (shown to someone): one store write for the whole list.

        Mark what you drew, each id once, e.g. every few seconds or every hundred draws: the
        refill counts a pool's unused captchas from these marks. Returns the batch's key (None for
        no ids); SettingError when an id is not one of the pool's complete captchas.
        """
        if isinstance(ids, str):
            raise SettingError("ids: a list of captcha ids, not one string")
        ids = list(ids)
        index = self._index(pool)
        unknown = [cid for cid in ids if not isinstance(cid, str) or cid not in index.answers]
        if unknown:  # perhaps from a shard completed since the last look
            index = self._index(pool, force=True)
            unknown = [cid for cid in unknown if not isinstance(cid, str) or cid not in index.answers]
        if unknown:
            raise SettingError(f"ids: {str(unknown[0])[:40]!r} is not a captcha of pool {pool!r}")
        key = mark_served(self.store, pool, ids)
        with self._lock:
            for cid in ids:
                index.serve(cid)
            if key:
                index.batches.add(key)
        return key

    def unused(self, pool: str) -> int:
        """Captchas of a pool this client has not seen served (as of its last look at the store)."""
        return len(self._index(pool).unused)

    def image(self, pool: str, cid: str) -> bytes:
        """The PNG of a captcha id."""
        check_pool_name(pool)
        try:
            return self.store.get(image_key(pool, _check_id(cid)))
        except KeyError:
            raise PoolError(f"captcha id: {cid!r} is not in pool {pool!r}") from None

    def check_image(self, pool: str, cid: str) -> None:
        """PoolError unless the store holds the captcha's PNG (one HEAD, no bytes): before handing out a link to it."""
        check_pool_name(pool)
        if not self.store.exists(image_key(pool, _check_id(cid))):
            raise PoolError(f"captcha id: {cid!r} is not in pool {pool!r}")

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
        raise SettingError(f"captcha id: {str(cid)[:40]!r} is not a captcha id (32 hex characters)")
    return cid
