"""Concurrent writers of one pool lose no manifest update and compute each shard once.

Real processes (forked from the test, each with its own store client) grow, refill, finish and
mark the same pool at once, on a folder and on moto's S3 server, round after round; the
manifest must then say exactly what the store holds, the shards computed must add up to the
pool, and its bytes must equal those of a pool made in one go.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import traceback
from dataclasses import replace

import pytest
import torch

from farm.exceptions import ConflictError
from farm.generate import generate_pool
from farm.pool import PoolSpec, manifest_key, read_manifest, update_manifest, write_manifest
from farm.seeds import KEYED
from farm.store import S3Store

SECRET = b"test-secret-not-for-production"
BASE = PoolSpec(count=4, shard_size=2, method="none", steps=1)  # clean captchas, two a shard: fast
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


def run_at_once(jobs: list[tuple], *args) -> list:
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
    import farm.pool
    monkeypatch.setattr(farm.pool, "MANIFEST_BACKOFF_SECONDS", 0.001)
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


