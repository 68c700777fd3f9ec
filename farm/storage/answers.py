"""Attacker answers reported by platforms: validated line by line, stored as content-addressed batches.

A platform sends JSON lines `{"pool", "captcha_id", "answer", "risk", "time"}`. Each line is
checked on its own, so a malformed line is reported (with its number and reason) and never stops
the valid ones. An answer that is no text of the pool's alphabet and length ("12a4" to a digits
pool) is kept and noted: it is what the bot typed, a failure that says which captchas it could
not solve, though never a label to learn. Accepted records are stored as
`answers/<batch>.jsonl`, the batch named by the hash of its canonical content: ingesting the
same file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from farm.exceptions import AnswersError, ConflictError, PoolError, SettingError
from farm.core.charset import MAX_ANSWER_CHARS
from farm.storage.layout import check_pool_name, keys_key
from farm.storage.manifest import complete_shards, read_manifest
from farm.storage.pools import pool_charset, read_shard_keys
from farm.storage.store import Store, jsonl_records

__all__ = ["ingest", "ingest_file", "read_at_most", "batches", "read_batch", "Limits", "IngestReport", "Rejection", "RISKS",
           "FIELDS"]

log = logging.getLogger(__name__)

FIELDS = ("pool", "captcha_id", "answer", "risk", "time")
RISKS = ("attacker", "suspicious", "human")  # how the platform rated the user; fine-tuning weighs them
READ_CHUNK = 1 << 20  # bytes per read of an ingested stream


@dataclass(frozen=True)
class Limits:
    """Size limits of one ingested file. A platform sends batches, not archives: split larger files."""

    max_bytes: int = 32 * 1024 * 1024
    max_line_bytes: int = 4096  # a record is ~150 bytes; anything this long is not one
    max_records: int = 200_000

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value <= 0:
                raise SettingError(f"{name.replace('_', '-')}: must be positive (got {value})")


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class IngestReport:
    """What happened to a file: the batch written (or found), the accepted count, every rejected line.

    `unreadable`: accepted lines whose answer is no text of the pool's alphabet and length.
    """

    batch: str | None
    key: str | None
    accepted: int
    added: int  # records new to the store: 0 when the same batch was ingested before
    lines: int
    rejected: list[Rejection] = field(default_factory=list)
    unreadable: list[Rejection] = field(default_factory=list)

    @property
    def duplicate(self) -> bool:
        return self.accepted > 0 and self.added == 0

    def to_dict(self) -> dict:
        return {"batch": self.batch, "key": self.key, "accepted": self.accepted, "added": self.added,
                "duplicate": self.duplicate, "lines": self.lines,
                "rejected": [asdict(r) for r in self.rejected], "unreadable": [asdict(r) for r in self.unreadable]}


class _Pools:
    """Pools and their captcha ids, read once per ingest (keys files hold the ids)."""

    def __init__(self, store: Store):
        self.store = store
        self._known: dict[str, tuple[object, set[str]] | None] = {}

    def get(self, pool: str):
        if pool not in self._known:
            try:
                check_pool_name(pool)
                charset = pool_charset(read_manifest(self.store, pool))
            except (PoolError, ValueError, KeyError):
                self._known[pool] = None
            else:
                ids = {r["id"] for s in complete_shards(self.store, pool)
                       for r in read_shard_keys(self.store, keys_key(pool, s))}
                self._known[pool] = (charset, ids)
        return self._known[pool]


def _check(record, pools: _Pools) -> tuple[dict, str | None]:
    """(the record, why its answer is no label of the pool or None) if valid, else ValueError with the first reason."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    extra = sorted(set(record) - set(FIELDS))
    if extra:  # unknown fields might carry user data we must not keep
        raise ValueError(f"unknown field(s): {', '.join(extra)}; allowed: {', '.join(FIELDS)}")
    for name in FIELDS:
        if not isinstance(record[name], str):
            raise ValueError(f"{name}: must be a string, got {type(record[name]).__name__}")
    known = pools.get(record["pool"])
    if known is None:
        raise ValueError(f"pool: {record['pool'][:64]!r} is not a pool of this store")
    charset, ids = known
    if record["captcha_id"] not in ids:
        raise ValueError(f"captcha_id: {record['captcha_id'][:64]!r} is not a captcha of pool {record['pool']!r}")
    if len(record["answer"]) > MAX_ANSWER_CHARS:
        raise ValueError(f"answer: longer than {MAX_ANSWER_CHARS} characters")
    if not record["answer"].isprintable():
        raise ValueError("answer: holds control characters; send the text as typed, one line")
    try:
        charset.label(record["answer"])
        unreadable = None
    except ValueError as e:  # the charset names the character or the length; say which field
        unreadable = "answer: " + str(e).removeprefix("text: ") + "; kept as a failed answer, never learned"
    if record["risk"] not in RISKS:
        raise ValueError(f"risk: {record['risk'][:32]!r} is not one of {', '.join(RISKS)}")
    try:
        when = datetime.fromisoformat(record["time"])
    except ValueError:
        raise ValueError(f"time: {record['time'][:40]!r} is not an ISO 8601 time like 2026-01-31T12:00:00Z") from None
    if when.tzinfo is None:
        raise ValueError(f"time: {record['time']!r} has no timezone; add Z or an offset like +01:00")
    return {name: record[name] for name in FIELDS}, unreadable


def ingest(store: Store, data: bytes, limits: Limits = Limits()) -> IngestReport:
    """Validate JSON lines and store the accepted records as one batch; raises AnswersError over a limit."""
    if len(data) > limits.max_bytes:
        raise AnswersError(f"answers: {len(data)} bytes is over the limit of {limits.max_bytes}; split the file")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) > limits.max_records:
        raise AnswersError(f"answers: {len(lines)} lines is over the limit of {limits.max_records} records; "
                           f"split the file")
    pools, accepted, rejected, unreadable, seen = _Pools(store), [], [], [], {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if len(raw) > limits.max_line_bytes:
            rejected.append(Rejection(number, f"line is {len(raw)} bytes; the limit is {limits.max_line_bytes}"))
            continue
        try:
            record, why = _check(json.loads(raw), pools)
        except UnicodeDecodeError:
            rejected.append(Rejection(number, "not UTF-8 text"))
            continue
        except json.JSONDecodeError as e:
            rejected.append(Rejection(number, f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        except ValueError as e:
            rejected.append(Rejection(number, str(e)))
            continue
        canonical = json.dumps(record, sort_keys=True, ensure_ascii=False)
        if canonical in seen:
            rejected.append(Rejection(number, f"duplicate of line {seen[canonical]}"))
            continue
        seen[canonical] = number
        accepted.append(canonical)
        if why:
            unreadable.append(Rejection(number, why))
    if not accepted:
        return IngestReport(None, None, 0, 0, len(lines), rejected)
    body = "".join(line + "\n" for line in sorted(accepted)).encode()  # sorted: the batch is a set of records
    batch = hashlib.sha256(body).hexdigest()[:32]
    key = f"answers/{batch}.jsonl"
    try:
        store.put(key, body, if_none_match=True, content_type="application/x-ndjson")
        added = len(accepted)
    except ConflictError:
        added = 0  # the same records were ingested before: same content, same name
    log.info("answers: %s accepted (%s unreadable), %s rejected, %s new in %s", len(accepted), len(unreadable),
             len(rejected), added, key)
    return IngestReport(batch, key, len(accepted), added, len(lines), rejected, unreadable)


def ingest_file(store: Store, path: str | Path, limits: Limits = Limits()) -> IngestReport:
    """Ingest a file, a pipe, a device or "-" (stdin); never more than limits.max_bytes + 1 bytes are read."""
    try:
        if str(path) == "-":
            data = read_at_most(sys.stdin.buffer, limits.max_bytes, "stdin")
        else:
            with open(path, "rb") as stream:
                found = os.fstat(stream.fileno())
                if stat.S_ISREG(found.st_mode) and found.st_size > limits.max_bytes:  # say its size, read nothing
                    raise AnswersError(f"answers: {path} is {found.st_size} bytes, over the limit of "
                                       f"{limits.max_bytes}; split it")
                data = read_at_most(stream, limits.max_bytes, str(path))
    except OSError as e:
        raise AnswersError(f"answers: cannot read {path} ({e.strerror})") from e
    return ingest(store, data, limits)


def read_at_most(stream: BinaryIO, limit: int, name: str) -> bytes:
    """All of `stream`, or AnswersError once it holds more than `limit` bytes.

    A pipe or a device (/dev/zero) has no size to check first; read in chunks, so memory follows
    what arrives (up to the limit), never the limit asked for.
    """
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise AnswersError(f"answers: {name} holds more than {limit} bytes, over the limit of {limit}; split it "
                       f"(or raise --max-bytes)")


def batches(store: Store) -> list[str]:
    """Keys of the stored answer batches."""
    return [k for k in store.list("answers/") if k.endswith(".jsonl")]


def read_batch(store: Store, key: str) -> list[dict]:
    return jsonl_records(store.get(key))
