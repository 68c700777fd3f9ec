"""Embedded `farm generate` against its slowest stage run alone.

Each stage (render, attack with the substitute's readings, encode+measure, store) is timed alone
on the same captchas; the pipeline renders in another process and writes in a thread while the
attack runs, so it should approach the slowest stage. Last line: `pipeline_vs_slowest_stage: <ratio>` (goal >= 0.8).
--preset compares a preset's cost with another's (run each on the same --count; the attack's CPU
seconds per captcha are steadier than its wall time on a shared machine).
"""

import argparse
import tempfile
import time

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.ops.submit import generate_pool
from farm.core.measures import measure
from farm.core.spec import PoolSpec
from farm.core.presets import PRESETS
from farm.ops.shard import attack_shard, attack_solvers, render_shard
from farm.storage.layout import encode_png
from farm.core.seeds import Seeds
from farm.storage.store import LocalStore


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--steps", type=int, help="[default: 10 for paper, else the preset's]")
    parser.add_argument("--preset", default="paper", choices=list(PRESETS))
    args = parser.parse_args()
    solver = load_solver(*registry.bundled())
    steps = args.steps or (10 if args.preset == "paper" else None)
    spec = PoolSpec.from_preset(args.preset, count=args.count, shard_size=args.shard_size,
                                **({"steps": steps} if steps else {}))
    solvers = attack_solvers(spec, solver)
    secret = b"benchmark"
    rates = {}
    started = time.perf_counter()
    shards = [render_shard(spec, s, Seeds(b"benchmark")) for s in range(spec.shards)]
    rates["render"] = args.count / (time.perf_counter() - started)
    started, cpu = time.perf_counter(), time.process_time()
    adversarial = [attack_shard(spec, c, solvers, s).adversarial for s, c in enumerate(shards)]
    rates["attack"] = args.count / (time.perf_counter() - started)
    attack_cpu = (time.process_time() - cpu) / args.count
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
        summary = generate_pool(store, "bench", spec, solvers, secret, progress=False)
    print(f"preset {args.preset}: attack {attack_cpu * 1000:.1f} CPU ms per captcha")
    for stage, rate in rates.items():
        print(f"{stage:8s} alone {rate:9.1f} captchas/s")
    slowest = min(rates, key=rates.get)
    pipeline = summary["captchas_per_second"]
    print(f"pipeline       {pipeline:9.1f} captchas/s (slowest stage: {slowest})")
    print(f"pipeline_vs_slowest_stage: {pipeline / rates[slowest]:.3f}")


if __name__ == "__main__":
    main()
