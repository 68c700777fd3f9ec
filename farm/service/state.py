"""The service's shared state in Redis: captchas handed out (single use, with a time to live), served marks.

farm:svc:ticket:<id>        {"pool", "captcha_id"}  EX ttl            issued, waiting for its one verify
farm:svc:done:<id>          {"pool", "captcha_id"}  EX answer window  verified: a second verify is refused as used,
                                                                      and /v1/answers can still name the captcha
farm:svc:held:<pool>:<cid>  "1"                     EX hold           out with someone: other draws pass it over
farm:svc:served:<pool>      set of captcha ids                        drawn, not yet marked served in the store
farm:svc:served-pools       set of pool names                         pools with marks waiting

Every service process reads and writes the same keys, so any of them verifies what another
issued, and a verify is atomic (GETDEL in a script): of two racing verifies of one id, one
gets the captcha and the other is told it was used. The id a platform sees is not the pool's
captcha id but a ticket: its expiry time, random bytes, and an HMAC (under FARM_SECRET, bound to
the platform) that tells garbage and another platform's ids from expired ones without a lookup.
Answers are not kept here: the pool client holds them in memory (farm.ops.client).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import struct
import time
from dataclasses import dataclass

from farm.exceptions import ExpiredTicketError, UnknownTicketError, UsedTicketError

__all__ = ["CaptchaState", "Issued", "PREFIX", "TICKET_CHARS"]

log = logging.getLogger(__name__)

PREFIX = "farm:svc:"  # apart from Celery's keys when FARM_REDIS is the broker's database
TICKET_CHARS = 32  # base64url of 4 + 12 + 8 bytes
_NONCE, _MAC = 12, 8  # 96 random bits: unguessable; 64 bits of MAC: a forged id is refused without Redis
_BASE64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_SERVED_BATCH = 1000  # ids popped per pool per flush: one store object each

# GETDEL and the tombstone in one step: two verifies of one id can never both get the captcha
_CONSUME = """
local value = redis.call('GETDEL', KEYS[1])
if value then redis.call('SET', KEYS[2], value, 'EX', ARGV[1]) end
return value
"""


@dataclass(frozen=True)
class Issued:
    id: str
    expires: int  # unix seconds


class CaptchaState:
    """Issue, look up and consume captcha tickets; queue served marks. One per service process.

    Arguments:
        redis: a redis.Redis client (decode_responses=False).
        secret: the HMAC key of tickets (FARM_SECRET: every service process must share it).
        ttl: seconds a ticket waits for its verify.
        answer_window: seconds a verified ticket is remembered (used-detection, answer reports).
        hold: seconds a drawn captcha is passed over by other draws (until its served mark has reached
            every process's pool client).
    """

    def __init__(self, redis, secret: bytes, ttl: int, answer_window: int, hold: int):
        self.redis, self.ttl, self.answer_window, self.hold_seconds = redis, ttl, answer_window, hold
        self._key = hmac.new(secret, b"captchafarm service tickets", hashlib.sha256).digest()  # own key, own use
        self._consume = redis.register_script(_CONSUME)

    # --- tickets ---

    def _mac(self, platform: str, body: bytes) -> bytes:
        return hmac.new(self._key, platform.encode() + b"\0" + body, hashlib.sha256).digest()[:_MAC]

    def _expires(self, platform: str, ticket) -> int:
        """The expiry a ticket carries; UnknownTicketError when it is not one this service gave `platform`."""
        if not _well_formed(ticket):
            raise UnknownTicketError(f"id: not a captcha id of this service (those are {TICKET_CHARS} characters "
                                     f"of A-Z, a-z, 0-9, - and _ from GET /v1/captcha)")
        raw = base64.urlsafe_b64decode(ticket.encode())
        body, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(platform, body)):
            raise UnknownTicketError("id: unknown captcha id (not issued by this service to this platform)")
        return struct.unpack(">I", body[:4])[0]

    def issue(self, platform: str, pool: str, cid: str) -> Issued:
        """A new ticket for captcha `cid` of `pool`, and its served mark queued for the store."""
        expires = int(time.time()) + self.ttl
        body = struct.pack(">I", expires) + os.urandom(_NONCE)
        ticket = base64.urlsafe_b64encode(body + self._mac(platform, body)).decode()
        value = json.dumps({"pool": pool, "captcha_id": cid})
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{PREFIX}ticket:{ticket}", value, ex=self.ttl)
            pipe.sadd(f"{PREFIX}served:{pool}", cid)
            pipe.sadd(f"{PREFIX}served-pools", pool)
            pipe.execute()
        return Issued(ticket, expires)

    def peek(self, ticket: str) -> tuple[str, str] | None:
        """(pool, captcha id) of a ticket waiting for its verify, None otherwise. No platform: browsers ask."""
        if not _well_formed(ticket):
            return None
        value = self.redis.get(f"{PREFIX}ticket:{ticket}")
        return _pair(value) if value else None

    def consume(self, platform: str, ticket: str) -> tuple[str, str]:
        """(pool, captcha id) of a ticket, which is used up; a TicketError says why it cannot be."""
        expires = self._expires(platform, ticket)
        value = self._consume(keys=[f"{PREFIX}ticket:{ticket}", f"{PREFIX}done:{ticket}"], args=[self.answer_window])
        now = time.time()
        if value is not None:
            if now > expires:  # Redis had not dropped it yet: the id's own clock decides
                raise ExpiredTicketError(f"id: expired {now - expires:.0f} s ago (captchas live {self.ttl} s); "
                                         f"draw a new one")
            return _pair(value)
        if self.redis.exists(f"{PREFIX}done:{ticket}"):
            raise UsedTicketError("id: already verified; a captcha is good for one verify: draw a new one")
        if now > expires:
            raise ExpiredTicketError(f"id: expired {now - expires:.0f} s ago (captchas live {self.ttl} s); "
                                     f"draw a new one")
        raise UsedTicketError("id: no longer held by the service (verified, or its state was lost); draw a new one")

    def resolve(self, platform: str, ticket: str) -> tuple[str, str]:
        """(pool, captcha id) of a ticket issued to `platform`, verified or not, within the answer window."""
        self._expires(platform, ticket)
        value = self.redis.get(f"{PREFIX}done:{ticket}") or self.redis.get(f"{PREFIX}ticket:{ticket}")
        if value is None:
            raise ExpiredTicketError(f"id: no longer known; answers are taken for {self.answer_window} s after "
                                     f"a verify")
        return _pair(value)

    # --- captchas out with someone, served marks ---

    def hold(self, pool: str, cid: str) -> bool:
        """Claim captcha `cid` for one draw; False when another draw holds it."""
        return bool(self.redis.set(f"{PREFIX}held:{pool}:{cid}", b"1", nx=True, ex=self.hold_seconds))

    def release(self, pool: str, cid: str) -> None:
        """Let other draws have captcha `cid` again: its draw failed before a ticket was issued."""
        self.redis.delete(f"{PREFIX}held:{pool}:{cid}")

    def flush_served(self, client) -> int:
        """Write the queued served marks to the store (one batch per pool); returns how many ids were written.

        Ids are popped atomically, so processes flushing at once never write an id twice; a write
        that fails puts its ids back for the next flush.
        """
        written = 0
        for raw in self.redis.smembers(f"{PREFIX}served-pools"):
            pool = raw.decode()
            ids = [i.decode() for i in self.redis.spop(f"{PREFIX}served:{pool}", _SERVED_BATCH) or []]
            if not ids:
                self.redis.srem(f"{PREFIX}served-pools", pool)
                if self.redis.scard(f"{PREFIX}served:{pool}"):  # an issue slipped in between: keep the pool listed
                    self.redis.sadd(f"{PREFIX}served-pools", pool)
                continue
            try:
                client.served(pool, ids)
                written += len(ids)
            except Exception as e:  # noqa: BLE001 (store down, or a pool deleted: the marks wait)
                self.redis.sadd(f"{PREFIX}served:{pool}", *ids)
                log.warning("pool %s: cannot write %d served marks yet (%s); next flush tries again", pool, len(ids), e)
        return written


def _well_formed(ticket) -> bool:
    return isinstance(ticket, str) and len(ticket) == TICKET_CHARS and set(ticket) <= _BASE64URL


def _pair(value: bytes) -> tuple[str, str]:
    data = json.loads(value)
    return data["pool"], data["captcha_id"]
