"""Attacker answers: every bad line rejected with its number and reason, good lines kept, nothing twice."""

import json
import os
import threading

import pytest
from click.testing import CliRunner

from farm.storage.answers import Limits, batches, ingest, ingest_file, read_batch
from farm.cli import main
from farm.exceptions import AnswersError
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.pools import read_keys

SECRET = b"test-secret-not-for-production"


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory, substitute):
    """A local store with an 8-captcha pool 'p' (clean: answers do not depend on the attack)."""
    from farm.storage.store import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("answers") / "store")
    generate_pool(store, "p", PoolSpec(count=8, shard_size=8, method="none"), [substitute], SECRET,
                  progress=False, processes=1)
    return store


@pytest.fixture
def ids(pool_store):
    return [r["id"] for r in read_keys(pool_store, "p")]


def record(cid, **fields):
    return {"pool": "p", "captcha_id": cid, "answer": "AB12", "risk": "attacker", "time": "2026-11-23T10:00:00Z",
            **fields}


def lines(*items) -> bytes:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items).encode()


def test_malformed_lines_are_rejected_line_by_line_and_valid_lines_kept(pool_store, ids):
    data = lines(
        record(ids[0]),                                          # 1 valid
        '{"pool": "p", "captcha_id": ',                          # 2 truncated JSON
        '["p", "x"]',                                            # 3 not an object
        {k: v for k, v in record(ids[1]).items() if k != "risk"},  # 4 missing field
        record(ids[1], pool="other"),                            # 5 unknown pool
        record("f" * 32),                                        # 6 unknown id
        record(ids[1], answer="AB-2"),                           # 7 outside the alphabet: kept, unreadable
        record(ids[1], answer="ABCDEFG"),                        # 8 too long for classic (4): kept, unreadable
        record(ids[1], risk="robot"),                            # 9 unknown risk label
        record(ids[1], time="yesterday"),                        # 10 not ISO 8601
        record(ids[1], time="2026-11-23T10:00:00"),              # 11 no timezone
        record(ids[1], user="alice@example.com"),                # 12 an extra field (user data)
        record(ids[1], answer=1234),                             # 13 not a string
        "",                                                      # 14 blank: skipped, not an error
        record(ids[0]),                                          # 15 duplicate of line 1
        record(ids[2], answer="ab12", risk="suspicious", time="2026-11-23T11:00:00+01:00"),  # 16 valid (case)
        record(ids[2], answer="AB\x1b2"),                        # 17 a control character
    )
    report = ingest(pool_store, data)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 15, 17]
    assert reasons[2].startswith("not valid JSON") and "not a JSON object" in reasons[3]
    assert "missing field(s): risk" in reasons[4] and "'other' is not a pool" in reasons[5]
    assert "is not a captcha of pool 'p'" in reasons[6] and "risk: 'robot'" in reasons[9]
    # what a bot typed outside the pool's alphabet or length is its failure: kept, noted, never a label
    unreadable = {r.line: r.reason for r in report.unreadable}
    assert sorted(unreadable) == [7, 8] and all("kept as a failed answer" in r for r in unreadable.values())
    assert "answer: character '-'" in unreadable[7] and "answer: 'ABCDEFG' has 7 characters" in unreadable[8]
    assert "control characters" in reasons[17]
    assert "ISO 8601" in reasons[10] and "no timezone" in reasons[11]
    assert "unknown field(s): user" in reasons[12] and "answer: must be a string" in reasons[13]
    assert reasons[15] == "duplicate of line 1"
    assert (report.accepted, report.added, report.lines) == (4, 4, 17)
    stored = read_batch(pool_store, report.key)
    assert stored == sorted([record(ids[0]), record(ids[1], answer="AB-2"), record(ids[1], answer="ABCDEFG"),
                             record(ids[2], answer="ab12", risk="suspicious", time="2026-11-23T11:00:00+01:00")],
                            key=lambda r: json.dumps(r, sort_keys=True))  # the batch's order: canonical lines
    assert report.key == f"answers/{report.batch}.jsonl" and report.key in batches(pool_store)


def test_the_same_file_twice_adds_nothing(pool_store, ids, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(lines(record(ids[3]), record(ids[4], risk="human"), "garbage"))
    first = ingest_file(pool_store, path)
    before = pool_store.list("answers/")
    second = ingest_file(pool_store, path)
    assert (first.added, second.added, second.duplicate) == (2, 0, True) and first.key == second.key
    assert pool_store.list("answers/") == before
    reordered = ingest(pool_store, lines(record(ids[4], risk="human"), record(ids[3])))
    assert reordered.key == first.key and reordered.added == 0  # a batch is a set of records


def test_size_limits_are_enforced_with_clear_errors(pool_store, ids, tmp_path):
    data = lines(record(ids[5]), record(ids[6]), record(ids[7]))
    with pytest.raises(AnswersError, match="over the limit of 100; split"):
        ingest(pool_store, data, Limits(max_bytes=100))
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    with pytest.raises(AnswersError, match="over the limit of 100; split"):
        ingest_file(pool_store, path, Limits(max_bytes=100))
    with pytest.raises(AnswersError, match="3 lines is over the limit of 2 records"):
        ingest(pool_store, data, Limits(max_records=2))
    long_line = json.dumps(record(ids[5], answer="A" * 5000))
    report = ingest(pool_store, lines(long_line, record(ids[5])), Limits(max_line_bytes=1000))
    assert report.accepted == 1 and "limit is 1000" in report.rejected[0].reason
    with pytest.raises(ValueError, match="max-records: must be positive"):
        Limits(max_records=0)
    with pytest.raises(AnswersError, match="cannot read"):
        ingest_file(pool_store, tmp_path / "missing.jsonl")


def test_a_device_or_a_pipe_is_read_no_further_than_the_limit(pool_store, ids, tmp_path):
    with pytest.raises(AnswersError, match="/dev/zero holds more than 100 bytes, over the limit of 100; split"):
        ingest_file(pool_store, "/dev/zero", Limits(max_bytes=100))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for data, limit in ((lines(record(ids[0])), 1000), (b"x" * 100_000, 1000)):
        writer = threading.Thread(target=write_ignoring_a_closed_reader, args=(fifo, data))
        writer.start()
        try:
            if len(data) <= limit:
                assert ingest_file(pool_store, fifo, Limits(max_bytes=limit)).accepted == 1
            else:
                with pytest.raises(AnswersError, match="pipe holds more than 1000 bytes, over the limit of 1000"):
                    ingest_file(pool_store, fifo, Limits(max_bytes=limit))
        finally:
            writer.join(timeout=30)


def write_ignoring_a_closed_reader(path, data: bytes) -> None:
    try:
        with open(path, "wb") as pipe:
            pipe.write(data)
    except BrokenPipeError:  # the reader stopped at its limit
        pass


def test_answers_ingest_command(pool_store, ids, tmp_path, monkeypatch):
    monkeypatch.setenv("FARM_STORE", pool_store.url)
    path = tmp_path / "b.jsonl"
    path.write_bytes(lines(record(ids[6]), "{", record(ids[7], risk="nobody")))
    runner = CliRunner()
    result = runner.invoke(main, ["answers", "ingest", str(path), "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["accepted"] == 1 and report["added"] == 1
    assert [r["line"] for r in report["rejected"]] == [2, 3]
    result = runner.invoke(main, ["answers", "ingest", str(path), "--strict"])
    assert result.exit_code == 1 and "already ingested: nothing added" in result.output
    assert f"{path}:3: rejected: risk: 'nobody'" in result.output
    result = runner.invoke(main, ["answers", "ingest", str(path), "--max-bytes", "10"])
    assert result.exit_code == 1 and "split" in result.output
    listed = json.loads(runner.invoke(main, ["answers", "list", "--json"]).output)
    assert {"key": report["key"], "records": 1} in listed


def test_answers_land_in_s3(s3_store, substitute):
    generate_pool(s3_store, "p", PoolSpec(count=4, shard_size=4, method="none"), [substitute], SECRET,
                  progress=False, processes=1)
    cid = read_keys(s3_store, "p")[0]["id"]
    report = ingest(s3_store, lines(record(cid), "nope"))
    assert report.added == 1 and [r.line for r in report.rejected] == [2]
    assert s3_store.list("answers/") == [report.key]
    assert ingest(s3_store, lines(record(cid))).added == 0
