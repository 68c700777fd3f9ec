"""Embedded generation: a whole pool without a broker, every core busy.

On CPU, whole shards run in one single-threaded process per core (as farm workers run them);
on a GPU, this process attacks while another renders the next shard and a thread writes the last.

The farm (workers/) runs the same two halves, attack_shard then write_shard, in each task
(farm.ops.shard.generate_shard); this module is the no-broker path.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed

import torch
from tqdm import tqdm

from farm.core.checkpoint import Solver
from farm.exceptions import PoolError
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_shard, release_shard, render_shard, generate_shard, check_reads, take_shard, \
    write_shard
from farm.storage.layout import check_pool_name
from farm.storage.manifest import merged_spec, pending_shards, read_manifest, write_manifest
from farm.storage.pools import spec_charset, supply
from farm.core.seeds import KEYED, Seeds, derivation
from farm.storage.store import Store, open_store

__all__ = ["generate_pool", "check_spec_matches", "check_keyed"]

log = logging.getLogger(__name__)
HELD_POLL_SECONDS = 1.0  # shards another process holds: one HEAD each per poll until they are complete


def check_spec_matches(store: Store, pool: str, spec: PoolSpec, grow: bool = False) -> None:
    """A pool is extended or completed only with the spec it was started with; `grow` lets its count rise.

    Growing (farm.ops.refill) appends whole shards: captcha i stays in shard i // shard_size, so every
    stored shard keeps its captchas and its bytes. A pool whose last shard is partial cannot grow:
    that shard would have to be written again, with other captchas in it. A pool of a source
    folder holds each of its captchas once, so never more than the folder. A growth asking for
    fewer than the pool holds was overtaken by another: it only helps finish the shards it names.
    """
    most = supply(spec, store)
    if most is not None and spec.count > most:
        raise PoolError(f"pool: {pool!r} asks for {spec.count} captchas but its source folder holds {most}; a "
                        f"source pool perturbs each of its captchas once: import a larger folder as a new pool "
                        f"(`farm generate --source DIR`)")
    try:
        existing = read_manifest(store, pool)
    except PoolError:
        return
    check_keyed(pool, existing)
    merged_spec(pool, existing, spec)  # PoolError when anything but the count differs
    old = PoolSpec.from_dict(existing["spec"]).count
    if spec.count == old or (grow and spec.count < old):  # asking for less: a concurrent growth got there first
        return
    if not grow:
        raise PoolError(f"pool: {pool!r} already exists with another spec (differs in count: it holds {old}, "
                        f"perhaps grown by `farm pool refill`); choose a new --pool name or repeat it with "
                        f"--count {old}")
    if old % spec.shard_size:
        raise PoolError(f"pool: {pool!r} ends in a partial shard ({old} captchas in shards of "
                        f"{spec.shard_size}), which growing would rewrite; only pools whose --count is a "
                        f"multiple of --shard-size grow")


def check_keyed(pool: str, manifest: dict) -> None:
    """New captchas go only into pools keyed by FARM_SECRET: never mixed into a pool anyone can render again."""
    if derivation(manifest) != KEYED:
        raise PoolError(f"pool: {pool!r} was made before captchas were keyed by FARM_SECRET: anyone with the public "
                        f"package can render its captchas again from its seed and read their answers, so it is "
                        f"never grown or completed. Generate a new pool to replace it, move platforms to it, then "
                        f"remove this one (`farm pool delete {pool}`)")


def _context():
    # never fork a process that holds CUDA state
    return multiprocessing.get_context("spawn" if torch.cuda.is_initialized() else "fork")


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_PROCESS: dict = {}  # a shard process's store and solvers, set once by _start_process


def _start_process(store_url: str, solvers: list[Solver], parent: int) -> None:
    _die_with(parent)
    torch.set_num_threads(1)
    _PROCESS.update(store=open_store(store_url), solvers=solvers)  # its own client: sockets are not shared


def _die_with(parent: int) -> None:
    """A killed `farm generate` must not leave shard processes writing behind it (Linux: PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's shutdown still ends them
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _render_elsewhere(spec: PoolSpec, shard: int, seeds: Seeds, store_url: str):
    """render_shard in the prefetch process, with its own store client (a source pool reads from it)."""
    return render_shard(spec, shard, seeds, open_store(store_url) if spec.source else None)


def _shard_in_process(pool: str, shard: int, spec: PoolSpec, secret: bytes) -> dict:
    return generate_shard(_PROCESS["store"], pool, shard, spec, _PROCESS["solvers"], secret)


def _in_processes(processes: int, store: Store, pool: str, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                  todo: list[int]):
    """Results of whole shards run in `processes` forked processes, as they complete."""
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"), initializer=_start_process,
                             initargs=(store.url, solvers, os.getpid())) as shard_processes:  # forked: solvers are not pickled
        futures = [shard_processes.submit(_shard_in_process, pool, shard, spec, secret) for shard in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _write(taken: dict, store: Store, pool: str, *args) -> dict:
    """write_shard's result, with the claim that let this process compute the shard (released once written)."""
    try:
        return {**write_shard(store, pool, *args), "claim": taken["claim"]}
    finally:
        release_shard(store, pool, taken)


def _wait_for(held: list[int], store: Store, pool: str, spec: PoolSpec, solvers: list[Solver], secret: bytes,
              device: str, collect) -> None:
    """Until the shards other processes held are complete; one whose claim expires or whose holder ends is computed here."""
    if held:
        log.info("pool %s: %d shards are being computed by other processes; waiting for them", pool, len(held))
    while held:
        time.sleep(HELD_POLL_SECONDS)
        still = []
        for shard in held:
            result = generate_shard(store, pool, shard, spec, solvers, secret, device=device)
            if result["claim"] == "held":
                still.append(shard)
            else:
                collect(result)
        held[:] = still


def generate_pool(store: Store, pool: str, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                  device: str = "cpu", progress: bool = True, processes: int | None = None,
                  grow: bool = False) -> dict:
    """Generate (or complete) a pool; returns the summary printed at the end of `farm generate`.

    `processes` (CPU; default: one per core): shards run whole in that many processes of one torch
    thread each, so the cores never wait for each other (a torch pool of all cores stalls
    whenever rendering or encoding takes one of them). 1, or a GPU: this process attacks while
    another renders the next shard and a thread writes the last one.

    `grow`: `spec` may hold more captchas than the pool's manifest (see check_spec_matches).
    """
    check_pool_name(pool)
    spec.validate()
    check_reads(solvers[0], spec_charset(spec, store), f"pool {pool!r} ({spec.scheme})")
    check_spec_matches(store, pool, spec, grow=grow)
    write_manifest(store, pool, spec, solvers[0], status="generating")
    todo = pending_shards(store, pool, spec)
    seeds = Seeds(secret)
    started = time.perf_counter()
    results, stages = [], {"render": 0.0, "attack": 0.0, "encode": 0.0, "store": 0.0}
    bar = tqdm(total=spec.count, initial=spec.count - sum(len(spec.indices(s)) for s in todo),
               desc=f"generate {pool}", unit="captcha", disable=not progress, dynamic_ncols=True)
    processes = 1 if device != "cpu" or torch.cuda.is_initialized() else min(processes or cores(), len(todo))
    prefetch = len(todo) > 1 and processes == 1
    executor = ProcessPoolExecutor(1, mp_context=_context()) if prefetch else None
    writer = ThreadPoolExecutor(1) if prefetch else None  # encodes and stores shard k while shard k+1 is attacked

    def collect(result: dict) -> None:
        results.append(result)
        for stage, seconds in result.get("stages", {}).items():
            stages[stage] += seconds
        bar.update(result["count"])
        done = [r for r in results if not r["skipped"]]
        if done:
            n = sum(r["count"] for r in done)
            bar.set_postfix(solved=f"{sum(r['substitute_solved'] for r in done) / n:.1%}",
                            ssim=f"{sum(r['ssim'] * r['count'] for r in done) / n:.3f}", refresh=False)

    held = []  # shards another process computes: waited for at the end

    def settle(result: dict) -> None:
        if result["claim"] == "held":
            held.append(result["shard"])
        else:
            collect(result)

    writing = None
    try:
        if processes > 1:
            for result in _in_processes(processes, store, pool, spec, solvers, secret, todo):
                settle(result)
        here = todo if processes == 1 else []
        pending = executor.submit(_render_elsewhere, spec, here[0], seeds, store.url) if executor and here else None
        for position, shard in enumerate(here):
            if executor:
                clean = pending.result()
                if position + 1 < len(here):  # render the next shard while this one is attacked
                    pending = executor.submit(_render_elsewhere, spec, here[position + 1], seeds, store.url)
            else:
                clean = render_shard(spec, shard, seeds, store)
            taken = take_shard(store, pool, shard, spec)  # complete meanwhile, or claimed by another run
            if taken["skipped"]:
                settle(taken)
                continue
            attacked = attack_shard(spec, clean, solvers, shard, device)
            if writing is not None:
                collect(writing.result())  # one write in flight at most: memory stays bounded, errors surface
            args = (store, pool, shard, spec, clean, attacked, solvers[0], secret)
            writing = writer.submit(_write, taken, *args) if writer else None
            if writer is None:
                collect(_write(taken, *args))
        if writing is not None:
            collect(writing.result())
            writing = None
        _wait_for(held, store, pool, spec, solvers, secret, device, collect)
    finally:
        bar.close()
        if writer:
            writer.shutdown(wait=True)  # a write in flight finishes: its keys file is written last or not at all
        if executor:
            executor.shutdown(cancel_futures=True)
    manifest = write_manifest(store, pool, spec, solvers[0], status="complete")
    elapsed = time.perf_counter() - started
    done = [r for r in results if not r["skipped"]]
    n = sum(r["count"] for r in done)
    return {
        "pool": pool, "store": store.url, "count": manifest["complete"], "generated": n,
        "skipped_shards": spec.shards - len(todo) + sum(r["skipped"] for r in results),
        "seconds": round(elapsed, 2),
        "captchas_per_second": round(n / elapsed, 2) if n else 0.0,
        "substitute": solvers[0].version,
        "donors": [solver.card.get("zoo", {}).get("name", solver.version) for solver in solvers[1:]],
        "substitute_accuracy_clean": round(sum(r["substitute_solved_clean"] for r in done) / n, 4) if n else None,
        "substitute_accuracy_adversarial": round(sum(r["substitute_solved"] for r in done) / n, 4) if n else None,
        "mean_ssim": round(sum(r["ssim"] * r["count"] for r in done) / n, 4) if n else None,
        "mean_linf": round(sum(r["linf"] * r["count"] for r in done) / n, 5) if n else None,
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
    }
