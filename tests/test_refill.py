"""Pool refill: platforms mark captchas served; the refill grows the pools they draw from by whole shards,
never touching what is stored; through the farm it queues the new shards on the `generate` list (real
Redis, moto S3, and the Procfile's own `beat` and `generate` processes).
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import urllib.request
from dataclasses import replace

import pytest
from click.testing import CliRunner

from farm.ops.client import PoolClient
from farm.exceptions import PoolError
from farm.storage import registry
from farm.ops.submit import check_spec_matches, generate_pool
from farm.storage.folder import import_source, read_folder
from farm.core.spec import FOLDER, PoolSpec
from farm.storage.pools import pool_names, read_keys
from farm.storage.manifest import read_manifest
from farm.ops.refill import refill, refill_floor
from farm.storage.served import compact_served, mark_served, read_served, served_batches
from farm.storage.store import Store, open_store
from tests.farm_parts import Worker, free_port, procfile, stop, wait_for
from tests.test_folders import make_folder
from tests.test_farm import farm_store_env, redis_broker, redis_port  # noqa: F401 (fixtures)

SECRET = "test-secret-not-for-production"
SPEC = PoolSpec(count=8, shard_size=4, method="none", steps=1)  # 2 shards of clean captchas: fast
PRIORITY_LISTS = ("generate\x06\x163", "generate\x06\x166", "generate\x06\x169")  # kombu's, for priorities 1-9


def make_pool(store: Store, substitute, name: str = "p", spec: PoolSpec = SPEC) -> None:
    generate_pool(store, name, spec, [substitute], SECRET.encode(), progress=False, processes=1)


def stored(store: Store, pool: str = "p") -> dict[str, bytes]:
    """Every image and keys file of a pool, by key."""
    return {k: store.get(k) for k in store.list(f"pools/{pool}/") if "/images/" in k or "/keys/" in k}


def ids(store: Store, pool: str = "p") -> list[str]:
    return [r["id"] for r in read_keys(store, pool)]


def never(pool, spec):
    raise AssertionError(f"{pool} should not grow")


# --- served marks ------------------------------------------------------------------------------------------

def test_served_marks_are_ids_only_one_object_a_batch_and_idempotent(any_store):
    marked = [f"{i:032x}" for i in range(5)]
    key = mark_served(any_store, "p", marked)
    assert mark_served(any_store, "p", list(reversed(marked)) + marked[:2]) == key  # same ids: the same object
    assert served_batches(any_store, "p") == [key] and key.startswith("pools/p/served/")
    assert any_store.get(key).decode().split() == marked
    assert mark_served(any_store, "p", []) is None
    for bad in (["not-an-id"], marked[0]):
        with pytest.raises(ValueError, match="ids"):
            mark_served(any_store, "p", bad)


def test_compacting_served_batches_keeps_every_id_and_later_batches(any_store):
    batches = [[f"{i:032x}" for i in range(k, k + 4)] for k in (0, 2, 6)]
    for batch in batches:
        mark_served(any_store, "p", batch)
    read = read_served(any_store, "p")
    late = mark_served(any_store, "p", [f"{99:032x}"])  # written after the reading: not compacted away
    compact_served(any_store, "p", read)
    after = read_served(any_store, "p")
    assert len(after) == 2 and late in after
    assert {i for b in after.values() for i in b} == {i for b in batches for i in b} | {f"{99:032x}"}


def test_a_draw_skips_served_captchas_and_other_clients_see_the_marks(store, substitute, caplog):
    make_pool(store, substitute)
    every = ids(store)
    platform = PoolClient(store, max_age=0)
    platform.served("p", every[:6])
    assert {platform.draw("p").id for _ in range(40)} == set(every[6:])
    other = PoolClient(store, max_age=0)  # another process of the platform
    assert other.unused("p") == 2
    assert other.draw("p", mark=True).id in every[6:] and other.unused("p") == 1
    other.draw("p", mark=True)
    assert other.unused("p") == 0 and platform.unused("p") == 0
    with caplog.at_level(logging.WARNING, logger="farm.ops.client"):
        assert other.draw("p").id in every  # ran dry: served ones again rather than failing
    assert "every captcha has been served" in caplog.text
    with pytest.raises(ValueError, match="not a captcha of pool"):
        platform.served("p", [f"{0:032x}"])
    answers = {r["answer"] for r in read_keys(store, "p")}
    for key in served_batches(store, "p"):
        assert not set(store.get(key).decode().split()) & answers


# --- growing a pool --------------------------------------------------------------------------------------

def test_refill_grows_a_pool_by_whole_shards_and_leaves_stored_shards_byte_identical(store, substitute,
                                                                                    monkeypatch):
    from farm.cli import main
    make_pool(store, substitute)
    before = stored(store)
    PoolClient(store).served("p", ids(store)[:6])
    monkeypatch.setenv("FARM_STORE", store.url)
    monkeypatch.delenv("FARM_BROKER", raising=False)

    def run(*args: str) -> list[dict]:
        result = CliRunner().invoke(main, ["pool", "refill", "--min", "8", "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)
    assert run("--dry-run")[0]["grow_to"] == 16 and read_manifest(store, "p")["count"] == 8
    (row,) = run()
    assert {k: row[k] for k in ("pool", "count", "complete", "served", "unused", "grow_to", "added")} == {
        "pool": "p", "count": 8, "complete": 8, "served": 6, "unused": 2, "grow_to": 16, "added": 8}
    manifest = read_manifest(store, "p")
    assert manifest["count"] == manifest["complete"] == 16 and manifest["status"] == "complete"
    assert manifest["spec"] == replace(SPEC, count=16).to_dict()
    after = stored(store)
    assert {k: after[k] for k in before} == before, "a stored shard changed"
    assert len(after) == 2 * len(before)  # two new shards: 8 images and 2 keys files
    assert run()[0]["grow_to"] is None  # 16 - 6 = 10 unused: above the floor
    # the grown pool holds the very captchas a pool made at 16 from the start holds, index by index
    make_pool(store, substitute, "q", replace(SPEC, count=16))
    grown, whole = read_keys(store, "p"), read_keys(store, "q")
    assert [r["answer"] for r in grown] == [r["answer"] for r in whole]
    assert [store.get(f"pools/p/images/{r['id']}.png") for r in grown] == \
        [store.get(f"pools/q/images/{r['id']}.png") for r in whole]


def test_a_pool_ending_in_a_partial_shard_is_reported_and_left_as_it_is(store, substitute):
    make_pool(store, substitute, spec=replace(SPEC, count=6))
    before = stored(store)
    PoolClient(store).served("p", ids(store)[:5])
    (row,) = refill(store, 8, never)
    assert "partial shard" in row["skipped"] and row["added"] == 0 and row["error"] is None
    assert stored(store) == before and read_manifest(store, "p")["count"] == 6
    with pytest.raises(PoolError, match="partial shard"):
        check_spec_matches(store, "p", replace(SPEC, count=8), grow=True)


def test_a_source_pool_grows_up_to_its_folder_and_no_further(store, substitute, tmp_path):
    make_folder(tmp_path / "own", count=10, scheme="classic", digits=False)
    source = import_source(store, read_folder(tmp_path / "own", substitute.charset))
    spec = PoolSpec(count=4, shard_size=4, scheme=FOLDER, source=source, method="none", steps=1)
    make_pool(store, substitute, "own", spec)
    grown = []

    def generate(pool, spec):
        grown.append(spec.count)
        return generate_pool(store, pool, spec, [substitute], SECRET.encode(), progress=False, processes=1, grow=True)

    PoolClient(store).served("own", ids(store, "own"))
    (row,) = refill(store, 8, generate)  # wants 12, the folder holds 10: the last shard is partial
    assert grown == [10] and row["grow_to"] == 10 and row["error"] is None
    assert len(ids(store, "own")) == 10 and read_manifest(store, "own")["status"] == "complete"
    before = stored(store, "own")
    (row,) = refill(store, 8, never)
    assert "every captcha of its source folder (10)" in row["skipped"] and row["error"] is None
    assert stored(store, "own") == before
    with pytest.raises(PoolError, match="source folder holds 10"):  # refused before the manifest changes
        make_pool(store, substitute, "other", replace(spec, count=12))
    assert "other" not in pool_names(store)


def test_only_the_count_of_a_pool_may_grow(store, substitute):
    make_pool(store, substitute)
    check_spec_matches(store, "p", replace(SPEC, count=16), grow=True)
    with pytest.raises(PoolError, match="another spec"):
        check_spec_matches(store, "p", replace(SPEC, count=16, seed=1), grow=True)
    check_spec_matches(store, "p", replace(SPEC, count=4), grow=True)  # overtaken by a larger growth: nothing to do
    generate_pool(store, "p", replace(SPEC, count=4), [substitute], SECRET.encode(), progress=False, grow=True)
    assert read_manifest(store, "p")["count"] == 8  # a pool never shrinks
    with pytest.raises(PoolError, match="another spec"):  # `farm generate` itself never grows a pool
        check_spec_matches(store, "p", replace(SPEC, count=16))


def test_pools_nobody_marks_are_left_alone_and_named_ones_are_looked_after(store, substitute):
    make_pool(store, substitute)
    asked = []

    def generate(pool, spec):
        asked.append((pool, spec.count))
        return {"job": "0123456789ab"}
    assert refill(store, 100, generate) == []  # no served mark: nobody draws from it
    rows = refill(store, 100, generate, pools=["p", "nope"])
    assert asked == [("p", 100)] and rows[0]["job"] == "0123456789ab"  # 8 + 23 whole shards of 4
    assert rows[1]["error"].startswith("PoolError") and "nope" in rows[1]["error"]


def test_the_floor_comes_from_the_flag_or_farm_refill_min(monkeypatch):
    monkeypatch.delenv("FARM_REFILL_MIN", raising=False)
    with pytest.raises(ValueError, match="FARM_REFILL_MIN"):
        refill_floor()
    monkeypatch.setenv("FARM_REFILL_MIN", "many")
    with pytest.raises(ValueError, match="FARM_REFILL_MIN"):
        refill_floor()
    monkeypatch.setenv("FARM_REFILL_MIN", "12")
    assert refill_floor() == 12 and refill_floor(3) == 3


# --- through the farm: real Redis and moto S3 ------------------------------------------------------------

def queued(client, name: str = "generate") -> list[dict]:
    """The generate_shard calls waiting on a Redis list: {args, kwargs} each (Celery's JSON message body)."""
    calls = []
    for raw in client.lrange(name, 0, -1):
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        calls.append({"args": args, "kwargs": kwargs})
    return calls


def test_the_refill_task_queues_the_missing_shards_on_the_generate_list_and_tops_the_pool_up(
        redis_broker, bucket, substitute, monkeypatch):
    import redis

    from workers import app as celery_app, tasks
    from workers.metrics import METRICS
    monkeypatch.setenv("FARM_BROKER", redis_broker)
    monkeypatch.setenv("FARM_STORE", f"s3://{bucket}/farm")
    monkeypatch.setattr(celery_app, "app", celery_app.create_app(redis_broker), raising=False)
    store = open_store(f"s3://{bucket}/farm")
    monkeypatch.setattr(tasks._held, "store", store)
    make_pool(store, substitute)
    registry.ensure_current(store)  # what `farm generate` or `farm pool refill` do first: workers never publish
    before = stored(store)
    PoolClient(store).served("p", ids(store)[:6])

    (row,) = tasks.refill_pools(floor=8)
    assert row["grow_to"] == 16 and row["added"] == 8 and row["job"]
    broker = redis.Redis.from_url(redis_broker)
    calls = queued(broker)
    # the farm sends no priority: every shard is on the list KEDA watches, none on the priority lists
    assert [c["args"][1] for c in calls] == [3, 2]  # LPUSH: the newest first
    assert all(broker.llen(name) == 0 for name in PRIORITY_LISTS)
    assert all(c["args"][0] == "p" and c["args"][2] == 4 and c["args"][3]["count"] == 16 for c in calls)
    value = METRICS.registry.get_sample_value
    assert value("farm_pool_unused_captchas", {"pool": "p"}) == 2
    assert value("farm_pool_floor_captchas", {"pool": "p"}) == 8
    assert read_manifest(store, "p")["status"] == "generating"

    broker.delete("generate")
    for call in reversed(calls):  # what a generate worker does with them
        tasks.generate_shard(*call["args"], **call["kwargs"])
    (row,) = tasks.refill_pools(floor=8)
    assert row["grow_to"] is None and row["unused"] == 10 and broker.llen("generate") == 0
    manifest = read_manifest(store, "p")
    assert manifest["status"] == "complete" and manifest["complete"] == 16  # the refill finished its job
    # the new shards name CURRENT (the bundled substitute, published as v1), the old ones what made them
    assert [s["substitute"]["version"] for s in manifest["shards"]] == [substitute.version] * 2 + ["v1"] * 2
    after = stored(store)
    assert {k: after[k] for k in before} == before
    assert value("farm_pool_unused_captchas", {"pool": "p"}) == 10


def test_queue_length_counts_every_list_of_a_queue_and_zero_when_empty(redis_broker):
    from workers.app import QUEUES, create_app
    from workers.metrics import QueueLength
    app = create_app(redis_broker)
    for priority in (None, None, 6):
        app.send_task("generate_shard", args=["p", 0, 4, {"count": 4}], priority=priority)
    lengths = QueueLength()
    assert list(lengths.collect())[0].samples == []  # not watching: not the beat process
    lengths.watch(app, QUEUES)
    (family,) = lengths.collect()
    assert {s.labels["queue"]: s.value for s in family.samples} == {"generate": 3, "finetune": 0, "refill": 0}


@pytest.mark.slow
def test_the_beat_process_tops_a_pool_up_through_the_farm(redis_broker, bucket, substitute, tmp_path):
    env = farm_store_env(redis_broker, bucket, FARM_REFILL_MIN="8", FARM_REFILL_SECONDS="2",
                         TMPDIR=str(tmp_path))  # where beat keeps its schedule
    store = open_store(env["FARM_STORE"])
    make_pool(store, substitute)
    registry.ensure_current(store)  # what `farm generate` or `farm pool refill` do first: the beat never publishes
    before = stored(store)
    PoolClient(store).served("p", ids(store)[:6])
    port = free_port()
    with open(tmp_path / "beat.log", "wb") as log:
        beat = subprocess.Popen(procfile()["beat"], shell=True, env={**env, "PORT": str(port)}, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker.start(env, tmp_path)
    try:
        worker.wait_ready()
        wait_for(lambda: read_manifest(store, "p")["complete"] == 16, 300,
                 "the beat process to grow the pool and the worker to write its new shards", interval=1)

        def metrics() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return ""
        wait_for(lambda: 'farm_pool_unused_captchas{pool="p"} 10.0' in metrics(), 60,
                 "the beat process to report 10 unused captchas", interval=1)
        text = metrics()
        assert 'farm_worker_consuming{queue="refill"} 1.0' in text
        assert 'farm_queue_length{queue="generate"} 0.0' in text
        assert 'farm_pool_floor_captchas{pool="p"} 8.0' in text
    finally:
        stop(worker.process)
        stop(beat)
    after = stored(store)
    assert {k: after[k] for k in before} == before and len(after) == 2 * len(before)
    assert "refill_pools" in (tmp_path / "beat.log").read_text()
