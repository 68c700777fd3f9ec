"""Issue 26, anticipation: which next generation, aimed at a version's hardened copies, does a retrained bot read least?

The farm's move (farm.ops.anticipation) adapts copies of its models on its own labelled pools, as a
blocked operator adapts its bot, and aims the next generation at them. This screens what that
generation could be, on an arms race store (`python -m benchmarks.arms_race --adaptive --keep DIR`)
whose version VERSION has hardened copies (its card's `hardened`): test captchas of a family (the seed
every arms race test pool uses, so the same clean captchas), with settings over the family's preset,
aimed at the solvers `farm generate` aims at (`--members all`: the substitute, its donors, its copies),
at those without the copies (`no-copies`), at the substitute alone (`sub`) or at the copies alone
(`copies`), are perturbed in memory as a shard is (render_shard, perturb) and read by the bot as served
and after Otsu, by each member (white-box), with the glyph-region SSIM (on colour for colour captchas).

  python -m benchmarks.anticipation --keep DIR --version v9 --bot DIR/bots/crnn-aug-r2-remember --family ink
  python -m benchmarks.anticipation --keep DIR --version v9 --bot ... --family geometry --set '{"displacement": 4}'

Last line: the same as JSON.

Measured: the docstring of benchmarks/arms_race_adaptive.py (round 2 against operators who keep their labels).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from farm.core.checkpoint import load_solver_dir
from farm.core.families import FAMILIES, family_preset
from farm.core.measures import measure
from farm.core.model import to_grey, to_tensor
from farm.core.preprocess import parse_chains
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec, scheme_mode
from farm.ops.shard import attack_solvers, perturb, render_shard
from farm.storage import config, registry
from farm.storage.layout import decode_png, encode_png
from farm.storage.store import LocalStore

TEST_SEED = 2601  # benchmarks.arms_race_adaptive's: every generation's test pool holds the same clean captchas
MEMBERS = ("all", "no-copies", "sub", "copies")


def members(solvers: list, copies: int, which: str) -> list:
    """The solvers a variant is aimed at: all of them, all but the hardened copies (last), the substitute, or the
    copies alone."""
    return {"all": solvers, "no-copies": solvers[:len(solvers) - copies], "sub": solvers[:1],
            "copies": solvers[len(solvers) - copies:]}[which]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, required=True, help="an arms race store (benchmarks.arms_race --keep)")
    parser.add_argument("--version", required=True, help="a version whose card names hardened copies")
    parser.add_argument("--bot", type=Path, required=True, help="the adapted bot's folder (DIR/bots/NAME-r2-remember)")
    parser.add_argument("--family", choices=list(FAMILIES), default="geometry")
    parser.add_argument("--set", default="{}", help="settings over the family's preset, as JSON")
    parser.add_argument("--members", choices=MEMBERS, default="all", help="whom the captchas are aimed at")
    parser.add_argument("--scheme", default="classic")
    parser.add_argument("--test", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    store = LocalStore(args.keep / "store")
    settings = json.loads(args.set)
    spec = PoolSpec.from_preset(family_preset(args.family), mode=scheme_mode(args.scheme), count=args.test,
                                scheme=args.scheme, seed=TEST_SEED, **settings).validate()
    substitute = registry.load(store, args.version)
    solvers = members(attack_solvers(spec, substitute), len(substitute.companions), args.members)
    bot, otsu = load_solver_dir(args.bot), parse_chains(["otsu"])[0]
    right = {"served": 0, "otsu": 0, **{f"member{i}": 0 for i in range(len(solvers))}}
    ssim, total, started = [], 0, time.perf_counter()
    for shard in range(spec.shards):
        clean = render_shard(spec, shard, Seeds(config.secret(store)))
        adversarial = [decode_png(encode_png(a)) for a in perturb(spec, clean, solvers, shard)]
        truth = [bot.charset.normalize(t) for t in clean.texts]
        x = to_grey(to_tensor(adversarial), bot.model.config.grey)
        for key, readings in [("served", bot.read(x)), ("otsu", bot.read(otsu.apply(x))),
                              *((f"member{i}", s.read(to_tensor(adversarial))) for i, s in enumerate(solvers))]:
            right[key] += sum(a == t for a, t in zip(readings, truth))
        ssim += [measure(c, a, g)["ssim_glyph_colour" if c.ndim == 3 else "ssim_glyph"]
                 for c, a, g in zip(clean.images, adversarial, clean.glyphs)]
        total += len(truth)
    shares = {key: round(value / total, 4) for key, value in right.items()}
    seconds = time.perf_counter() - started
    print(f"{args.family} {settings or ''} aimed at {args.members} ({len(solvers)} solvers, "
          f"{len(substitute.companions)} copies of {args.version}): the bot reads {shares['served']:.1%} as served, "
          f"{shares['otsu']:.1%} after Otsu; glyph SSIM {np.mean(ssim):.3f}; {total / seconds:.2f} captchas/s")
    print(json.dumps({"version": args.version, "bot": args.bot.name, "family": args.family, "set": settings,
                      "members": args.members, "count": total, "ssim_glyph": round(float(np.mean(ssim)), 4),
                      "captchas_per_second": round(total / seconds, 3), **shares}))


if __name__ == "__main__":
    main()
