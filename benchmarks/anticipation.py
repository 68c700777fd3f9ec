"""Issue 26, anticipation: aim generation k+1 at copies of the farm's models hardened on its own pools of generation k.

The farm holds unlimited labelled captchas of its own generations, so it can do what a blocked
operator does: adapt models on them (farm.ops.attacker.adapt, as the bot adapts) and aim the next
pools at those hardened copies, in the same family. This asks whether that beats a bot adapted on
generation k. It reuses an arms race store (`python -m benchmarks.arms_race --adaptive --keep DIR`):
the farm's own labelled pool `own` (seed 777, never the bot's), the hardened copies under
DIR/hardened, and the test pool `v1-test` (the seed every generation's test uses, so the same
clean captchas). The test captchas are perturbed in memory like a shard (render_shard, perturb) with
the solvers asked for, then read by the bot as served and after Otsu, and by each solver (white-box).

  python -m benchmarks.anticipation --keep DIR --bot DIR/bots/crnn-aug-r1 --harden substitute,crnn-b,resnet-a
  python -m benchmarks.anticipation --keep DIR --bot ... --harden substitute --beside --noise-on 2

--harden: which of the pool's solvers are replaced by their hardened copies; --beside keeps the
substitute as it is first and adds its hardened copy as a donor (the substitute's clean accuracy is a
goal of the issue, and the hardened copy loses 14 points); --noise-on N: edge's dense noise aimed at
the first N solvers (the library's aims it at the substitute alone; its dots at every solver).

Measured on colour `classic` (ink, v1 of the arms race store of 2026-12-07, FARM_SECRET=arms-race-26; bot:
crnn-aug adapted on 3,000 ink captchas; 250 test captchas; hardened copies adapted on 3,000 of `own`, 600
steps, 134-161 s each; their clean accuracy: substitute 82.4% (96.8% before), crnn-b 85.8%, resnet-a 86.8%):

  aimed at                                                    bot served  Otsu   hardened copies read (white-box)
  v1 as published (substitute, crnn-b, resnet-a)                 68.8%   52.4%   -
  hardened crnn-b and resnet-a                                   66.4%   48.8%   -
  hardened substitute, crnn-b and resnet-a                       42.8%   48.0%   0.8% / 25.2% / 46.8%
  hardened substitute (first), donors as they are                42.0%   47.6%   -
  substitute + its hardened copy beside                          71.2%   54.0%   38.8%
  the same, members weighted by softmax(-loss) per captcha       72.4%   52.4%   39.6%
  the same, edge's noise aimed at both                           51.2%   48.8%    2.0%

What it says: a hardened copy helps only where the dense noise is aimed at it (edge's dots alone do
not reach it), and then takes the bot from 69% to 42-51% as served, but nothing after Otsu (48-54%);
moving to another family does more (geometry: 21.2% / 14.0%, the farm's move in benchmarks/arms_race.py
--adaptive). Against a bot that keeps its labels, though, every family is learned by round 2, and
there copies hardened on all the families it learned, the dense noise or warp aimed at them, take it
from 62% to 28% (a scratch screening) and, as the farm's move now does it (farm.ops.anticipation),
to 29.6% (arms_race --adaptive --remember --anticipate 3000).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from benchmarks.arms_race_adaptive import make_pool
from farm.core.attacks import edge
from farm.core.attacks.momentum import Momentum
from farm.core.checkpoint import load_solver_dir
from farm.core.model import to_grey, to_tensor
from farm.core.preprocess import parse_chains
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.core.zoo_loading import load_member
from farm.ops.attacker import adapt
from farm.ops.shard import attack_solvers, perturb, render_shard
from farm.storage import config, registry
from farm.storage.layout import decode_png, encode_png
from farm.storage.manifest import read_manifest
from farm.storage.store import LocalStore

OWN_SEED, TEST_SEED = 777, 2601  # the farm's own labelled pool; the arms race's test seed


def hardened(store, root: Path, name: str, count: int):
    """The copy of `name` (substitute: v1) adapted on the farm's own pool, made once and kept under root/hardened."""
    out = root / "hardened" / name
    if not (out / "card.json").exists():
        solver = registry.load(store, "v1") if name == "substitute" else load_member(name)
        adapt(solver, store, [make_pool(store, "own", count, OWN_SEED, "v1")], count, out, progress=False)
    return load_solver_dir(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, required=True, help="an arms race store (benchmarks.arms_race --keep)")
    parser.add_argument("--bot", type=Path, required=True, help="the adapted bot's folder (DIR/bots/NAME-r1)")
    parser.add_argument("--harden", default="substitute,crnn-b,resnet-a", help="solvers replaced by hardened copies")
    parser.add_argument("--beside", action="store_true", help="keep the substitute first, its hardened copy beside")
    parser.add_argument("--noise-on", type=int, default=1, help="edge's noise aimed at the first N solvers")
    parser.add_argument("--own", type=int, default=3000, help="labelled captchas of the farm's own pool")
    parser.add_argument("--test", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    store = LocalStore(args.keep / "store")
    spec = PoolSpec.from_dict(read_manifest(store, make_pool(store, "v1-test", args.test, TEST_SEED, "v1"))["spec"])
    substitute = registry.load(store, "v1")
    names = ["substitute", *(s.card.get("zoo", {}).get("name") for s in attack_solvers(spec, substitute)[1:])]
    harden = args.harden.split(",") if args.harden else []
    solvers = [hardened(store, args.keep, n, args.own) if n in harden else s
               for n, s in zip(names, attack_solvers(spec, substitute))]
    if args.beside:
        names, solvers = ["substitute", *names], [substitute, *solvers]
    labels = [f"{n} (hardened)" if n in harden and (i or not args.beside) else n for i, n in enumerate(names)]
    edge.Momentum = lambda _first, **kw: Momentum(solvers[:args.noise_on], **kw)  # noqa: E731  the noise's aim
    bot, otsu = load_solver_dir(args.bot), parse_chains(["otsu"])[0]
    right = {"served": 0, "otsu": 0, **{label: 0 for label in labels}}
    total = 0
    for shard in range(spec.shards):
        clean = render_shard(spec, shard, Seeds(config.secret(store)))
        adversarial = [decode_png(encode_png(a)) for a in perturb(spec, clean, solvers, shard)]
        truth = [bot.charset.normalize(t) for t in clean.texts]
        x = to_grey(to_tensor(adversarial), bot.model.config.grey)
        for key, readings in [("served", bot.read(x)), ("otsu", bot.read(otsu.apply(x))),
                              *((label, s.read(to_tensor(adversarial))) for label, s in zip(labels, solvers))]:
            right[key] += sum(a == t for a, t in zip(readings, truth))
        total += len(truth)
    shares = {key: round(value / total, 4) for key, value in right.items()}
    print(f"aimed at {', '.join(labels)} (edge's noise at the first {args.noise_on}): the bot reads "
          f"{shares['served']:.1%} as served, {shares['otsu']:.1%} after Otsu; white-box: "
          + ", ".join(f"{label} {shares[label]:.1%}" for label in labels))
    print(json.dumps({"harden": harden, "beside": args.beside, "noise_on": args.noise_on, "count": total, **shares}))


if __name__ == "__main__":
    main()
