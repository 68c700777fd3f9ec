"""The farm against itself and against the embedded run: captchas/s with 1 and 2 workers, per-shard overhead.

Workers are the Procfile's `generate` line (solo pool) on a real broker (FARM_BROKER, else a
database of its own on the local Redis) over a local folder store. Each configuration is
measured warm (a small job loads the model first), from submission to the last keys file.
The embedded figure is farm.ops.shard.generate_shard called in this process on the same shards.
Torch threads: 1 per worker (FARM_TORCH_THREADS=1, the Procfile's default) and torch's default (all cores).
Last line: `two_workers_speedup: <ratio>` (goal >= 1.7 on 2 cores, 1 thread per worker);
goal for the overhead: <= 3% for 256-captcha shards.
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from farm.storage import registry
from farm.core.spec import PoolSpec
from farm.ops.shard import generate_shard
from farm.storage.store import LocalStore
from tests.farm_parts import Worker, answers, claim_redis_db, stop

SECRET = "benchmark-secret"
POLL_SECONDS = 0.05  # the producer's poll, fine enough not to blur a shard's seconds


class Farm:
    """n `generate` workers from the Procfile with `threads` torch threads each, stopped on exit."""

    def __init__(self, env: dict, folder: Path, n: int, threads: int):
        self.workers = [Worker.start({**env, "FARM_TORCH_THREADS": str(threads)}, folder) for _ in range(n)]
        self.tag = f"{n}x{threads}"

    def __enter__(self) -> "Farm":
        for worker in self.workers:
            worker.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            stop(worker.process)

    def job(self, store: LocalStore, pool: str, spec: PoolSpec, solver) -> float:
        """Seconds from submission to the manifest, as `farm generate` spends them."""
        from farm.ops.submit import submit
        from workers import producer

        producer.POLL_SECONDS = POLL_SECONDS
        started = time.perf_counter()
        submit(store, pool, spec, registry.reference(store), producer.CeleryRunner(), follows="current", progress=False)
        return time.perf_counter() - started

    def warm(self, store: LocalStore, solver) -> None:
        """Every worker loads the model before anything is timed."""
        n = len(self.workers)
        self.job(store, f"warm-{self.tag}", PoolSpec.from_preset("paper", count=8 * n, shard_size=8, steps=1), solver)

    def metric(self, name: str) -> float:
        """A metric summed over its labels and over the workers' /metrics."""
        pattern = re.compile(rf"^{name}(?:{{[^}}]*}})? (\S+)$", re.M)
        return sum(float(v) for worker in self.workers for v in pattern.findall(
            urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5).read().decode()))


def overhead(spec: PoolSpec, solver, store: LocalStore, env: dict, folder: Path, repeat: int) -> None:
    """One shard embedded, then the same shard as a farm job, in turns: background load hits both alike.

    What the farm adds is the job's wall time minus the seconds the worker spent in the stages of
    farm.ops.shard.generate_shard (the embedded run's own work): queueing, CURRENT, parsing, the
    producer's manifest and job record. Shard against shard is also printed; on a shared machine
    it swings by more than the farm's cost.
    """
    one = PoolSpec(**{**spec.to_dict(), "count": spec.shard_size, "ensemble": ()})
    torch.set_num_threads(1)
    rows = []
    with Farm(env, folder, 1, 1) as farm:
        farm.warm(store, solver)
        generate_shard(LocalStore(folder / "warm"), "warm", 0, PoolSpec.from_preset("paper", count=8, shard_size=8, steps=1), [solver],
                       SECRET.encode())
        for r in range(repeat):
            started = time.perf_counter()
            generate_shard(LocalStore(folder / f"embedded-{r}"), f"shard-{r}", 0, one, [solver], SECRET.encode())
            embedded = time.perf_counter() - started
            stages = farm.metric("farm_stage_seconds_total")
            job = farm.job(store, f"shard-{r}", one, solver)
            added = job - (farm.metric("farm_stage_seconds_total") - stages)
            rows.append((embedded, job, added))
            print(f"{spec.shard_size}-captcha shard, 1 torch thread: embedded {embedded:6.2f} s, farm job {job:6.2f} s, "
                  f"of which the farm's own {added * 1000:5.0f} ms", flush=True)
    e, j, a = (statistics.median(column) for column in zip(*rows))
    print(f"shard_vs_shard: {j / e - 1:+.1%} (median of {repeat}: a one-shard job from submission to manifest against "
          f"the embedded shard, wall time)")
    print(f"shard_overhead: {a / e:+.1%} (median of {repeat}: {a * 1000:.0f} ms of the farm's own per "
          f"{spec.shard_size}-captcha shard)")


def throughput(spec: PoolSpec, solver, store: LocalStore, env: dict, folder: Path, n: int, threads: int) -> float:
    """Captchas/s of a warm job on n workers."""
    with Farm(env, folder, n, threads) as farm:
        farm.warm(store, solver)
        rate = spec.count / farm.job(store, f"bench-{farm.tag}", spec, solver)
    print(f"farm, {n} worker(s) x {threads} torch thread(s): {rate:6.1f} captchas/s", flush=True)
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="Shards measured for the overhead.")
    args = parser.parse_args()
    spec = PoolSpec.from_preset("paper", count=args.count, shard_size=args.shard_size, steps=args.steps).validate()
    cores = torch.get_num_threads()
    claimed = None
    if not os.environ.get("FARM_BROKER"):
        if not answers(6379):
            sys.exit("no broker: set FARM_BROKER or start redis-server on 127.0.0.1:6379")
        db, claimed = claim_redis_db(6379)
        os.environ["FARM_BROKER"] = f"redis://127.0.0.1:6379/{db}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            store = LocalStore(folder / "store")
            env = {**os.environ, "FARM_STORE": store.url, "FARM_SECRET": SECRET, "FARM_DEVICE": "cpu"}
            os.environ.update(FARM_SECRET=SECRET)
            registry.ensure_current(store)
            solver = registry.load(store)
            overhead(spec, solver, store, env, folder, args.repeat)
            rates = {(n, t): throughput(spec, solver, store, env, folder, n, t)
                     for n in (1, 2) for t in sorted({1, cores})}
    finally:
        if claimed is not None:
            claimed.flushdb()
    print(f"two_workers_speedup_{cores}_threads_each: {rates[(2, cores)] / rates[(1, cores)]:.3f}")
    print(f"two_workers_vs_best_single_worker: {rates[(2, 1)] / max(rates[(1, 1)], rates[(1, cores)]):.3f}")
    print(f"two_workers_speedup: {rates[(2, 1)] / rates[(1, 1)]:.3f}")


if __name__ == "__main__":
    main()
