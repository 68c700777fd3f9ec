"""Shard claims: a shard is claimed before it is computed, so that concurrent growths compute it once.

pools/<pool>/claims/<shard>.json   who computes the shard (host, process, thread) and until when

A claim is a conditional create (If-None-Match): of the processes that want a shard at once,
exactly one creates its claim and computes it; the others see it held. A claim is taken over
only when its holder cannot be computing any more: its expiry passed (the farm's visibility
timeout: the broker hands a dead worker's task on after it too), or its holder was a process of
this machine's process namespace that has ended (a killed `farm generate` resumed at once), or
it is the caller's own from an earlier attempt. The takeover is a conditional write on the
claim's ETag, so of two takers exactly one wins. A claim is deleted once its shard's keys file
is written, so claims/ shows the work in flight; whoever claims checks the keys file again
before computing. Claims are private bookkeeping: platforms never read them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from farm.exceptions import ConflictError
from farm.storage.store import Store

__all__ = ["Claim", "claim_shard", "release_claim", "claim_key", "CLAIM_SECONDS"]

log = logging.getLogger(__name__)
# An embedded run's claims: longer than any shard takes on a CPU (minutes), so that a live run's
# claim never expires under it. A killed run on this machine is seen to be gone at once; only a
# run killed on another machine sharing the store keeps its shards for this long.
CLAIM_SECONDS = 3600
CLAIM_ATTEMPTS = 5  # create, read, take over: each conflict means another claimer moved first


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a shard: `result` is claimed, taken_over (compute it) or held (another computes it)."""

    result: str
    holder: dict
    expires: float  # seconds since the epoch
    etag: str | None = None  # of the claim this process wrote: it releases only that one

    @property
    def ours(self) -> bool:
        return self.result != "held"


def claim_key(pool: str, shard: int) -> str:
    return f"pools/{pool}/claims/{shard:05d}.json"


def claim_shard(store: Store, pool: str, shard: int, seconds: float = CLAIM_SECONDS) -> Claim:
    """Claim a shard for `seconds`; a Claim saying whether this thread computes it. ConflictError if claimers never settle."""
    if seconds <= 0:
        raise ValueError(f"seconds: a claim must last a positive time (got {seconds})")
    key = claim_key(pool, shard)
    for _ in range(CLAIM_ATTEMPTS):
        now = time.time()
        mine = {**_identity(), "time": _iso(now), "expires": _iso(now + seconds)}
        body = json.dumps(mine, sort_keys=True).encode()
        try:
            return Claim("claimed", mine, now + seconds, store.put(key, body, if_none_match=True,
                                                                    content_type="application/json"))
        except ConflictError:
            pass
        try:
            data, etag = store.get_with_etag(key)
        except KeyError:
            continue  # removed since: try to create it again
        held = _parse(data, key)
        reason = _why_free(held, now)
        if reason is None:
            return Claim("held", held, _expiry(held))
        try:
            written = store.put(key, body, if_match=etag, content_type="application/json")
        except ConflictError:
            continue  # another taker won: read whose it is now
        log.info("shard %d of pool %s: took over the claim of %s (%s)", shard, pool, held.get("worker"), reason)
        return Claim("taken_over", mine, now + seconds, written)
    raise ConflictError(f"{key}: the claim changed {CLAIM_ATTEMPTS} times while this process tried to take it; "
                        f"the shard is busy, try again")


def release_claim(store: Store, pool: str, shard: int, etag: str | None) -> None:
    """Delete a shard's claim once its keys file is written (or its computation failed), if it is still ours.

    A claim taken over meanwhile (its expiry passed while this process computed) is the taker's:
    it is left alone. Anyone claiming after the delete checks the keys file before computing.
    """
    key = claim_key(pool, shard)
    if etag is not None and store.etag(key) == etag:
        store.delete(key)


def _identity() -> dict:
    """Who claims: the host, the process namespace, the process (pid and start) and the thread."""
    pid = os.getpid()
    host = socket.gethostname()
    return {"worker": f"{host}:{pid}", "host": host, "pidns": _pid_namespace(), "pid": pid,
            "started": _started(pid), "thread": threading.get_ident()}


def _why_free(held: dict, now: float) -> str | None:
    """Why the holder of a claim cannot be computing its shard any more; None while it may be."""
    if _expiry(held) <= now:
        return "expired"
    me = _identity()
    if me["pidns"] is None or (held.get("host"), held.get("pidns")) != (me["host"], me["pidns"]):
        return None  # another machine's or container's process: only its expiry tells
    if (held.get("pid"), held.get("started")) == (me["pid"], me["started"]):
        # our own earlier attempt (a task retried); another thread of this process is alive
        return "this thread's earlier attempt" if held.get("thread") == me["thread"] else None
    if held.get("started") is not None and _started(held.get("pid")) != held["started"]:
        return "its process has ended"
    return None


def _started(pid) -> str | None:
    """A running process's start time in clock ticks since boot (None when it is not running, or not Linux).

    With the pid it names one process: a pid reused later has another start time.
    """
    if not isinstance(pid, int):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # ended, not yet reaped
        return None
    return fields[19]  # field 22 of proc(5): starttime


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _parse(data: bytes, key: str) -> dict:
    try:
        held = json.loads(data)
        _expiry(held)
        return held
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("%s: unreadable claim, treated as expired", key)
        return {"expires": _iso(0)}


def _expiry(held: dict) -> float:
    return datetime.fromisoformat(held["expires"]).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
