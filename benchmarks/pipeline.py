"""Embedded `farm generate` against its slowest stage run alone.

Each stage (render, attack with the substitute's readings, encode+measure, store) is timed alone
on the same captchas; the pipeline renders in another process and writes in a thread while the
attack runs, so it should approach the slowest stage. Last line: `pipeline_vs_slowest_stage: <ratio>` (goal >= 0.8).
"""

import argparse
import tempfile
import time

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.ops.submit import generate_pool
from farm.core.measures import measure
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_shard, render_shard
from farm.storage.layout import encode_png
from farm.core.seeds import Seeds
from farm.storage.store import LocalStore


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    solver = load_solver(*registry.bundled())
    spec = PoolSpec.from_preset("paper", count=args.count, shard_size=args.shard_size, steps=args.steps)
    secret = b"benchmark"
    rates = {}
    started = time.perf_counter()
    shards = [render_shard(spec, s, Seeds(b"benchmark")) for s in range(spec.shards)]
    rates["render"] = args.count / (time.perf_counter() - started)
    started = time.perf_counter()
    adversarial = [attack_shard(spec, c, [solver], s).adversarial for s, c in enumerate(shards)]
    rates["attack"] = args.count / (time.perf_counter() - started)
    started = time.perf_counter()
    blobs = []
    for c, adv in zip(shards, adversarial):
        for k in range(len(c.indices)):
            blobs.append(encode_png(adv[k]))
            measure(c.images[k], adv[k], c.glyphs[k])
    rates["encode"] = args.count / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        started = time.perf_counter()
        for i, blob in enumerate(blobs):
            store.put(f"pools/x/images/{i}.png", blob)
        rates["store"] = args.count / (time.perf_counter() - started)
        summary = generate_pool(store, "bench", spec, [solver], secret, progress=False)
    for stage, rate in rates.items():
        print(f"{stage:8s} alone {rate:9.1f} captchas/s")
    slowest = min(rates, key=rates.get)
    pipeline = summary["captchas_per_second"]
    print(f"pipeline       {pipeline:9.1f} captchas/s (slowest stage: {slowest})")
    print(f"pipeline_vs_slowest_stage: {pipeline / rates[slowest]:.3f}")


if __name__ == "__main__":
    main()
