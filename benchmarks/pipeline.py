"""Embedded `farm generate` against its slowest stage run alone.

Each stage (render, attack with the substitute's readings, encode+measure, store) is timed alone
on the same captchas; the pipeline renders in another process and writes in a thread while the
attack runs, so it should approach the slowest stage. Last line: `pipeline_vs_slowest_stage: <ratio>` (goal >= 0.8;
the lowest over the presets given).

`--preset NAME` (repeatable; default paper, at --steps 10) runs each preset on the same captchas
and prints side by side their pipeline rates (wall time), their attack's captchas per CPU-second
of this process (steadier when other jobs share the cores) and mean glyph-region SSIM, e.g.

  nice -n 10 python -m benchmarks.pipeline --count 128 --shard-size 64 --preset recommended --preset warp
"""

import argparse
import tempfile
import time

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.ops.submit import generate_pool
from farm.core.measures import measure
from farm.core.presets import PRESETS
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_shard, attack_solvers, render_shard
from farm.storage.layout import encode_png
from farm.core.seeds import Seeds
from farm.storage.store import LocalStore


def run(preset: str, args, solver) -> dict:
    """Each stage alone, then the whole embedded pipeline, for one preset: captchas/s and mean glyph SSIM."""
    steps = {"steps": args.steps} if args.steps is not None else {}
    spec = PoolSpec.from_preset(preset, count=args.count, shard_size=args.shard_size, **steps).validate()
    solvers = attack_solvers(spec, solver)  # with the preset's donors (edge names two)
    secret = b"benchmark"
    rates = {}
    started = time.perf_counter()
    shards = [render_shard(spec, s, Seeds(b"benchmark")) for s in range(spec.shards)]
    rates["render"] = args.count / (time.perf_counter() - started)
    started, cpu = time.perf_counter(), time.process_time()
    adversarial = [attack_shard(spec, c, solvers, s).adversarial for s, c in enumerate(shards)]
    rates["attack"] = args.count / (time.perf_counter() - started)
    attack_cpu = args.count / (time.process_time() - cpu)  # this process's CPU alone: steadier on a shared machine
    started = time.perf_counter()
    blobs, ssim = [], []
    for c, adv in zip(shards, adversarial):
        for k in range(len(c.indices)):
            blobs.append(encode_png(adv[k]))
            ssim.append(measure(c.images[k], adv[k], c.glyphs[k])["ssim_glyph"])
    rates["encode"] = args.count / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        started = time.perf_counter()
        for i, blob in enumerate(blobs):
            store.put(f"pools/x/images/{i}.png", blob)
        rates["store"] = args.count / (time.perf_counter() - started)
        summary = generate_pool(store, "bench", spec, solvers, secret, progress=False)
    print(f"preset {preset} ({spec.method}, {spec.steps} steps)")
    for stage, rate in rates.items():
        print(f"  {stage:8s} alone {rate:9.1f} captchas/s")
    slowest = min(rates, key=rates.get)
    pipeline = summary["captchas_per_second"]
    print(f"  pipeline       {pipeline:9.1f} captchas/s (slowest stage: {slowest})", flush=True)
    print(f"  attack per CPU-second {attack_cpu:9.1f} captchas")
    return {"pipeline": pipeline, "ratio": pipeline / rates[slowest], "ssim_glyph": sum(ssim) / len(ssim),
            "attack_cpu": attack_cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--steps", type=int, help="gradient steps (default: the preset's; paper's is 10)")
    parser.add_argument("--preset", action="append", choices=list(PRESETS),
                        help="preset to run (repeatable; default: paper)")
    args = parser.parse_args()
    solver = load_solver(*registry.bundled())
    results = {preset: run(preset, args, solver) for preset in args.preset or ["paper"]}
    if len(results) > 1:
        first = next(iter(results))
        print(f"side by side ({args.count} captchas each; relative to {first}):")
        base = results[first]
        for preset, r in results.items():
            print(f"  {preset:12s} pipeline {r['pipeline']:8.2f} captchas/s  x{r['pipeline'] / base['pipeline']:.2f}"
                  f"  attack {r['attack_cpu']:6.2f} captchas per CPU-s  x{r['attack_cpu'] / base['attack_cpu']:.2f}"
                  f"  glyph SSIM {r['ssim_glyph']:.3f}")
    print(f"pipeline_vs_slowest_stage: {min(r['ratio'] for r in results.values()):.3f}")


if __name__ == "__main__":
    main()
