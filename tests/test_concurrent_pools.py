"""Concurrent writers of one pool lose no manifest update and compute each shard once.

Real processes (forked from the test, each with its own store client) grow, refill, finish and
mark the same pool at once, on a folder and on moto's S3 server, round after round; the
manifest must then say exactly what the store holds, the shards computed must add up to the
pool, and its bytes must equal those of a pool made in one go.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import threading
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone

import pytest
import torch

from farm.storage import registry
from farm.storage.claims import claim_key, claim_shard
from farm.ops.client import PoolClient
from farm.exceptions import ConflictError
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.pools import export_pool, list_pools, read_keys
from farm.storage.layout import keys_key, manifest_key
from farm.storage.manifest import read_manifest, update_manifest, write_manifest
from farm.ops.refill import pool_level, refill
from farm.core.seeds import KEYED
from farm.storage.served import read_served
from farm.storage.store import LocalStore, S3Store, open_store
from tests.conftest import farm_env

SECRET = b"test-secret-not-for-production"
BASE = PoolSpec(count=4, shard_size=2, method="none", steps=1)  # clean captchas, two a shard: fast
ROUNDS = 6
FORK = multiprocessing.get_context("fork")  # children inherit the loaded substitute, nothing is pickled
CHILD_TIMEOUT = 120


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny shards: a second torch thread only spins against the other processes (20x slower on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_store(any_store, monkeypatch):
    """Each store; on moto, conditional PUTs made atomic as on AWS S3 and MinIO.

    moto 5.2 checks If-Match / If-None-Match and then writes, in two steps without a lock, so two
    racing conditional writes can both succeed there (never on S3 itself): one lock around its PUT
    handler gives the guarantee the code relies on. The server runs in this process's thread.
    """
    if isinstance(any_store, S3Store):
        from moto.s3.responses import S3Response
        lock, put = threading.Lock(), S3Response.put_object

        def atomic_put(self):
            with lock:
                return put(self)
        monkeypatch.setattr(S3Response, "put_object", atomic_put)
    return any_store


def run_at_once(jobs: list[tuple]) -> list:
    """Run each job (a function and its arguments) in a forked process, all released together; their results."""
    barrier, results = FORK.Barrier(len(jobs)), FORK.Queue()
    processes = [FORK.Process(target=_child, args=(i, barrier, results, job)) for i, job in enumerate(jobs)]
    for p in processes:
        p.start()
    found = dict(results.get(timeout=CHILD_TIMEOUT) for _ in processes)
    for p in processes:
        p.join(CHILD_TIMEOUT)
    errors = [v for v in found.values() if isinstance(v, str) and v.startswith("Traceback")]
    assert not errors, errors[0]
    return [found[i] for i in range(len(jobs))]


def _child(i, barrier, results, job):
    function, *args = job
    try:
        barrier.wait(30)
        results.put((i, function(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((i, traceback.format_exc()))


def grow(url, substitute, count):
    summary = generate_pool(open_store(url), "p", replace(BASE, count=count), [substitute], SECRET, progress=False,
                            processes=1, grow=True)
    return {"generated": summary["generated"], "asked": count}


def refill_to(url, substitute, floor):
    store, summaries = open_store(url), []

    def generate(pool, spec):
        summaries.append(generate_pool(store, pool, spec, [substitute], SECRET, progress=False, processes=1,
                                       grow=True))
        return summaries[-1]
    (row,) = refill(store, floor, generate, pools=["p"])
    assert row["error"] is None, row["error"]
    return {"generated": sum(s["generated"] for s in summaries), "asked": row["grow_to"] or 0}


def mark(url, draws):
    client = PoolClient(open_store(url), max_age=0)
    return {"generated": 0, "asked": 0, "marked": [client.draw("p", mark=True).id for _ in range(draws)]}


def stored_objects(store) -> dict[str, bytes]:
    return {k: store.get(k) for k in store.list("pools/p/") if "/images/" in k or "/keys/" in k}


def test_concurrent_growths_refills_and_finishes_lose_no_update_and_compute_each_shard_once(
        shared_store, substitute, tmp_path):
    store, url, size = shared_store, shared_store.url, BASE.shard_size
    generate_pool(store, "p", BASE, [substitute], SECRET, progress=False, processes=1)
    marked, started = set(), time.perf_counter()
    for _ in range(ROUNDS):
        count = read_manifest(store, "p")["count"]
        PoolClient(store).served("p", [r["id"] for r in read_keys(store, "p")])  # all used: the refill grows it
        outcomes = run_at_once([
            (grow, url, substitute, count + 2 * size),  # a generate finishing while larger growths run
            (grow, url, substitute, count + 4 * size),
            (grow, url, substitute, count + 4 * size),  # the same growth twice: its shards computed once
            (refill_to, url, substitute, 3 * size),  # below its floor: grows to count + 3 shards, unless overtaken
            (grow, url, substitute, count),  # a re-run of the pool as it was
            (mark, url, 3),  # a platform drawing and marking
        ])
        target = max(o["asked"] for o in outcomes)
        manifest = read_manifest(store, "p")
        assert manifest["count"] == target == count + 4 * size, "an update of the count was lost"
        assert manifest["complete"] == len(read_keys(store, "p")) == target and manifest["status"] == "complete"
        assert [s["shard"] for s in manifest["shards"]] == list(range(target // size))
        assert manifest["spec"] == replace(BASE, count=target).to_dict() and manifest["derivation"] == KEYED
        assert sum(o["generated"] for o in outcomes) == target - count, "a shard was computed twice"
        assert store.list("pools/p/claims/") == [], "a claim outlived its shard"
        for o in outcomes:
            marked.update(o.get("marked", []))
    seconds = time.perf_counter() - started
    final = read_manifest(store, "p")["count"]
    served = {cid for ids in read_served(store, "p").values() for cid in ids}
    assert marked <= served
    one_go = LocalStore(tmp_path / "one-go")
    generate_pool(one_go, "p", replace(BASE, count=final), [substitute], SECRET, progress=False, processes=1)
    assert stored_objects(store) == stored_objects(one_go), "the grown pool differs from one made in one go"
    print(f"{type(store).__name__}: {ROUNDS} rounds of 6 processes, {final} captchas, {seconds:.1f} s")


def test_claims_stay_private_and_out_of_every_count_and_listing(store, substitute, tmp_path):
    generate_pool(store, "p", BASE, [substitute], SECRET, progress=False, processes=1)
    claim_shard(store, "p", 5)  # a growth's claim on a shard not written yet
    assert store.list("pools/p/claims/") == [claim_key("p", 5)]  # complete shards' claims were released
    assert [(r["pool"], r["count"], r["complete"], r["status"]) for r in list_pools(store)] == [
        ("p", 4, 4, "complete")]
    assert pool_level(store, "p").complete == 4
    dest = LocalStore(tmp_path / "export")
    export_pool(store, "p", dest, with_keys=True)
    assert not dest.list("pools/p/claims/") and len(dest.list("pools/p/images/")) == 4
    client = PoolClient(store)
    client.served("p", [client.draw("p").id])
    assert client.unused("p") == 3 and pool_level(store, "p").served == 1


def test_a_finishing_generate_never_lowers_the_count_a_growth_raised(store, substitute):
    generate_pool(store, "p", BASE, [substitute], SECRET, progress=False, processes=1)
    write_manifest(store, "p", replace(BASE, count=8), substitute, status="generating")  # a growth queued
    manifest = write_manifest(store, "p", BASE, substitute, status="complete")  # an earlier generate finishes
    assert manifest["count"] == 8 and manifest["status"] == "generating" and manifest["complete"] == 4
    generate_pool(store, "p", replace(BASE, count=8), [substitute], SECRET, progress=False, processes=1, grow=True)
    manifest = write_manifest(store, "p", BASE, substitute, status="complete")
    assert manifest["count"] == manifest["complete"] == 8 and manifest["status"] == "complete"


def test_a_manifest_update_keeps_the_pools_derivation_and_the_shards_substitutes(store, substitute):
    generate_pool(store, "p", BASE, [substitute], SECRET, progress=False, processes=1)
    named = {0: {"version": "v7", "sha256": "ab" * 32}}
    write_manifest(store, "p", BASE, substitute, status="complete", shard_substitutes=named)
    manifest = write_manifest(store, "p", BASE, substitute, status="complete", seeded="seed")
    assert manifest["derivation"] == KEYED and manifest["shards"][0]["substitute"] == named[0]


def test_an_update_that_keeps_losing_gives_up_with_a_clear_error_and_loses_nothing(store, substitute, monkeypatch):
    import farm.storage.manifest
    monkeypatch.setattr(farm.storage.manifest, "MANIFEST_BACKOFF_SECONDS", 0.001)
    write_manifest(store, "p", BASE, substitute, status="generating")
    other = iter(range(100))

    def change(old):
        store.put(manifest_key("p"), json.dumps({**old, "other": next(other)}).encode())  # another writer, each time
        return {**old, "mine": True}
    with pytest.raises(ConflictError, match=r"before each of 3 attempts.*nothing was lost.*run the command again"):
        update_manifest(store, "p", change, attempts=3)
    assert read_manifest(store, "p")["other"] == 2 and "mine" not in read_manifest(store, "p")


def test_two_writers_that_create_a_pool_with_other_specs_have_one_winner(store, substitute):
    def create(spec):
        try:
            write_manifest(store, "p", spec, substitute, status="generating")
            return "won"
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"
    outcomes = run_at_once([(create, BASE), (create, replace(BASE, seed=1)), (create, replace(BASE, eps=0.01))])
    assert outcomes.count("won") == 1 and all("another spec" in o for o in outcomes if o != "won")


def _claim(url, seconds, linger):
    claim = claim_shard(open_store(url), "p", 0, seconds)
    linger.wait(30)  # alive until every claimer has looked: a live holder is never taken over
    return claim.result


def test_a_claim_is_taken_over_only_after_it_expires_and_by_exactly_one_taker(shared_store):
    store, url = shared_store, shared_store.url
    expires = time.time() + 6  # long enough for four processes to start and look on a busy machine
    elsewhere = {"worker": "elsewhere:7", "host": "elsewhere", "pidns": "pid:[1]", "pid": 7, "started": "1",
                 "thread": 1, "time": "2024-01-01T00:00:00+00:00",
                 "expires": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="milliseconds")}
    store.put(claim_key("p", 0), json.dumps(elsewhere).encode(), if_none_match=True)
    linger = FORK.Barrier(4)
    assert run_at_once([(_claim, url, 60, linger)] * 4) == ["held"] * 4  # another machine's, not expired
    assert time.time() < expires, "the machine was too slow for this test: the claim expired before the first look"
    while time.time() < expires:
        time.sleep(0.1)
    outcomes = run_at_once([(_claim, url, 60, linger)] * 4)
    assert sorted(outcomes) == ["held"] * 3 + ["taken_over"]
    assert claim_shard(store, "p", 0).result == "taken_over"  # its holder, a process of this machine, has ended


def test_an_own_earlier_claim_is_taken_back_and_anothers_is_held(store):
    assert claim_shard(store, "p", 1, 60).result == "claimed"
    assert claim_shard(store, "p", 1, 60).result == "taken_over"  # this thread's earlier attempt (a task retried)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(claim_shard(store, "p", 1, 60)))
    thread.start()
    thread.join()
    assert seen[0].result == "held" and seen[0].holder["worker"].endswith(f":{os.getpid()}")
    with pytest.raises(ValueError, match="seconds"):
        claim_shard(store, "p", 1, 0)


def _task(pool, shard, spec):
    from celery.exceptions import Retry

    from workers import tasks
    from workers.metrics import METRICS
    def counts():
        value = METRICS.registry.get_sample_value
        return {r: value("farm_shards_claimed_total", {"result": r}) or 0 for r in ("claimed", "held")}
    tasks._held.store = None  # this process's own client, from FARM_STORE
    before = counts()
    try:
        outcome = tasks.generate_shard(pool, shard, len(spec.indices(shard)), spec.to_dict())
        outcome = "computed" if not outcome["skipped"] else "skipped"
    except Retry:
        outcome = "retry"
    return outcome, {r: n - before[r] for r, n in counts().items()}


def test_a_shard_queued_by_two_growths_is_computed_by_one_worker_task(shared_store, substitute, monkeypatch):
    from workers import tasks
    store = shared_store
    monkeypatch.setenv("FARM_STORE", store.url)
    registry.ensure_current(store)
    tasks.current_substitute(store, "cpu")  # loaded once here; the forked tasks find it unchanged
    spec = replace(BASE, count=8)
    generate_pool(store, "p", BASE, [substitute], SECRET, progress=False, processes=1)
    write_manifest(store, "p", spec, substitute, status="generating")
    outcomes = run_at_once([(_task, "p", 2, spec)] * 3 + [(_task, "p", 3, spec)] * 3)
    for shard in (slice(0, 3), slice(3, 6)):
        results = [o for o, _ in outcomes[shard]]
        assert results.count("computed") == 1 and set(results) <= {"computed", "retry", "skipped"}
    claimed = sum(metrics["claimed"] for _, metrics in outcomes)
    held = sum(metrics["held"] for _, metrics in outcomes)
    assert claimed == 2 and held == [o for o, _ in outcomes].count("retry")
    assert _task("p", 2, spec)[0] == "skipped" and store.exists(keys_key("p", 3))


def farm_at_once(tmp_path, *commands: list[str]) -> list[dict]:
    """Run `farm` commands side by side (real processes, each with its shard processes); their JSON outputs."""
    running = [subprocess.Popen(["farm", *args, "--json"], env=farm_env(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for args in commands]
    outputs = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        outputs.append(json.loads(out))
    return outputs


@pytest.mark.slow
def test_farm_generate_and_pool_refill_side_by_side_from_the_command_line(tmp_path):
    store = LocalStore(tmp_path / "store")
    registry.ensure_current(store)  # every command then generates with v1, and so does the pool made in one go
    generate = ["generate", "--pool", "p", "--count", "12", "--shard-size", "2", "--method", "none", "--no-progress"]
    first = farm_at_once(tmp_path, generate, generate)  # two operators start the same pool
    assert sum(s["generated"] for s in first) == 12 and {s["count"] for s in first} <= {12}
    PoolClient(store).served("p", [r["id"] for r in read_keys(store, "p")])
    refill_cmd = ["pool", "refill", "--min", "8", "--pool", "p", "--no-progress"]
    rows = farm_at_once(tmp_path, refill_cmd, refill_cmd)  # two operators top it up: 12 served + 8
    assert {row[0]["grow_to"] for row in rows} <= {20, None} and any(row[0]["grow_to"] for row in rows)
    manifest = read_manifest(store, "p")
    assert manifest["count"] == manifest["complete"] == len(read_keys(store, "p")) == 20
    assert manifest["status"] == "complete" and not store.list("pools/p/claims/")
    one_go = LocalStore(tmp_path / "one-go")
    generate_pool(one_go, "p", replace(BASE, count=20), [registry.load(store)], SECRET, progress=False, processes=1)
    assert stored_objects(store) == stored_objects(one_go)
    again = subprocess.run(["farm", *generate], env=farm_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--count 20" in again.stderr  # the pool was grown: the error says to what
