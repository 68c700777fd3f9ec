"""The in-process runner of farm.ops.submit: a job's shards computed here, every core busy, no broker.

On CPU, whole shards run in one single-threaded process per core (as farm workers run them);
on a GPU, this process attacks while another renders the next shard and a thread writes the last.
Every shard goes through the functions a farm worker calls (farm.ops.shard), claim included, so
runs in several processes or beside the farm compute each shard once and write the same bytes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed

import torch
from tqdm import tqdm

from farm.core.checkpoint import Solver
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_shard, generate_shard, release_shard, render_shard, take_shard, write_shard
from farm.storage.store import Store, open_store

__all__ = ["LocalRunner", "cores"]

log = logging.getLogger(__name__)
HELD_POLL_SECONDS = 1.0  # shards another process holds: one HEAD each per poll until they are complete


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalRunner:
    """Computes a job's shards in this process and its children with `solvers` (the substitute first).

    `processes` (CPU; default: one per core): shards run whole in that many processes of one torch
    thread each, so the cores never wait for each other (a torch pool of all cores stalls
    whenever rendering or encoding takes one of them). 1, or a GPU: this process attacks while
    another renders the next shard and a thread writes the last one.
    """

    remote = False  # the job ends with this process: no record in the store, never left running

    def __init__(self, solvers: list[Solver], secret: bytes, device: str = "cpu", processes: int | None = None):
        self.solvers, self.secret, self.device, self.processes = solvers, secret, device, processes

    def check(self, store: Store) -> None:
        """Nothing to reach: the solvers are loaded and the secret given."""

    def run(self, store: Store, job, progress: bool = True, wait: bool = True) -> list[dict]:
        """Every shard of `job.todo` written (or found complete); one result per shard, as generate_shard gives."""
        spec, todo = job.spec, job.todo
        results = []
        bar = tqdm(total=spec.count, initial=spec.count - sum(len(spec.indices(s)) for s in todo),
                   desc=f"generate {job.pool}", unit="captcha", disable=not progress, dynamic_ncols=True)

        def collect(result: dict) -> None:
            results.append(result)
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

        processes = 1 if self.device != "cpu" or torch.cuda.is_initialized() else min(self.processes or cores(), len(todo))
        try:
            if processes > 1:
                for result in _in_processes(processes, store, job.pool, spec, self.solvers, self.secret, todo):
                    settle(result)
            else:
                self._here(store, job.pool, spec, todo, settle, collect)
            self._wait_for(held, store, job.pool, spec, collect)
        finally:
            bar.close()
        return results

    def _here(self, store: Store, pool: str, spec: PoolSpec, todo: list[int], settle: Callable, collect: Callable):
        """Shards in this process; with more than one, the next is rendered elsewhere and the last written by a thread."""
        prefetch = len(todo) > 1
        renderer = ProcessPoolExecutor(1, mp_context=_context()) if prefetch else None
        writer = ThreadPoolExecutor(1) if prefetch else None  # encodes and stores shard k while shard k+1 is attacked
        seeds, writing = Seeds(self.secret), None
        try:
            pending = renderer.submit(_render_elsewhere, spec, todo[0], seeds, store.url) if renderer else None
            for position, shard in enumerate(todo):
                if renderer:
                    clean = pending.result()
                    if position + 1 < len(todo):  # render the next shard while this one is attacked
                        pending = renderer.submit(_render_elsewhere, spec, todo[position + 1], seeds, store.url)
                else:
                    clean = render_shard(spec, shard, seeds, store)
                taken = take_shard(store, pool, shard, spec)  # complete meanwhile, or claimed by another run
                if taken["skipped"]:
                    settle(taken)
                    continue
                attacked = attack_shard(spec, clean, self.solvers, shard, self.device)
                if writing is not None:
                    collect(writing.result())  # one write in flight at most: memory stays bounded, errors surface
                args = (store, pool, shard, spec, clean, attacked, self.solvers[0], self.secret)
                writing = writer.submit(_write, taken, *args) if writer else None
                if writer is None:
                    collect(_write(taken, *args))
            if writing is not None:
                collect(writing.result())
        finally:
            if writer:
                writer.shutdown(wait=True)  # a write in flight finishes: its keys file is written last or not at all
            if renderer:
                renderer.shutdown(cancel_futures=True)

    def _wait_for(self, held: list[int], store: Store, pool: str, spec: PoolSpec, collect: Callable) -> None:
        """Until the shards other processes held are complete; one whose claim expires or whose holder ends is computed here."""
        if held:
            log.info("pool %s: %d shards are being computed by other processes; waiting for them", pool, len(held))
        while held:
            time.sleep(HELD_POLL_SECONDS)
            still = []
            for shard in held:
                result = generate_shard(store, pool, shard, spec, self.solvers, self.secret, device=self.device)
                if result["claim"] == "held":
                    still.append(shard)
                else:
                    collect(result)
            held[:] = still


def _context():
    # never fork a process that holds CUDA state
    return multiprocessing.get_context("spawn" if torch.cuda.is_initialized() else "fork")


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
