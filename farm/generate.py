"""Embedded generation: a whole pool in this process, rendering the next shard in another one.

The farm (workers/) runs the same `generate_shard` per task; this module is the no-broker path.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm import tqdm

from farm.checkpoint import Solver
from farm.exceptions import PoolError
from farm.pool import PoolSpec, check_pool_name, generate_shard, pending_shards, read_manifest, render_shard, \
    write_manifest
from farm.store import Store

__all__ = ["generate_pool", "check_spec_matches"]


def check_spec_matches(store: Store, pool: str, spec: PoolSpec) -> None:
    """A pool is extended or completed only with the spec it was started with."""
    try:
        existing = read_manifest(store, pool)
    except PoolError:
        return
    old = existing["spec"]
    differs = [k for k, v in spec.to_dict().items() if old.get(k) != v]
    if differs:
        raise PoolError(f"pool: {pool!r} already exists with another spec (differs in {', '.join(differs)}); "
                        f"choose a new --pool name or repeat the original arguments")


def _context():
    # never fork a process that holds CUDA state
    return multiprocessing.get_context("spawn" if torch.cuda.is_initialized() else "fork")


def generate_pool(store: Store, pool: str, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                  device: str = "cpu", progress: bool = True, prefetch: bool = True) -> dict:
    """Generate (or complete) a pool; returns the summary printed at the end of `farm generate`."""
    check_pool_name(pool)
    spec.validate()
    check_spec_matches(store, pool, spec)
    write_manifest(store, pool, spec, solvers[0], status="generating")
    todo = pending_shards(store, pool, spec)
    started = time.perf_counter()
    results, stages = [], {"render": 0.0, "attack": 0.0, "encode": 0.0, "store": 0.0}
    bar = tqdm(total=spec.count, initial=spec.count - sum(len(spec.indices(s)) for s in todo),
               desc=f"generate {pool}", unit="captcha", disable=not progress, dynamic_ncols=True)
    executor = ProcessPoolExecutor(1, mp_context=_context()) if prefetch and len(todo) > 1 else None
    try:
        pending = executor.submit(render_shard, spec, todo[0]) if executor and todo else None
        for position, shard in enumerate(todo):
            if executor:
                clean = pending.result()
                if position + 1 < len(todo):  # render the next shard while this one is attacked
                    pending = executor.submit(render_shard, spec, todo[position + 1])
            else:
                clean = None
            result = generate_shard(store, pool, shard, spec, solvers, secret, clean=clean, device=device)
            results.append(result)
            for stage, seconds in result.get("stages", {}).items():
                stages[stage] += seconds
            bar.update(result["count"])
            done = [r for r in results if not r["skipped"]]
            if done:
                n = sum(r["count"] for r in done)
                bar.set_postfix(solved=f"{sum(r['substitute_solved'] for r in done) / n:.1%}",
                                ssim=f"{sum(r['ssim'] * r['count'] for r in done) / n:.3f}", refresh=False)
    finally:
        bar.close()
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
        "substitute_accuracy_clean": round(sum(r["substitute_solved_clean"] for r in done) / n, 4) if n else None,
        "substitute_accuracy_adversarial": round(sum(r["substitute_solved"] for r in done) / n, 4) if n else None,
        "mean_ssim": round(sum(r["ssim"] * r["count"] for r in done) / n, 4) if n else None,
        "mean_linf": round(sum(r["linf"] * r["count"] for r in done) / n, 5) if n else None,
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
    }
