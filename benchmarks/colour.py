"""Colour captchas (issue 28): how the substitute reads them, and whether colour gives anything back to bots.

1. The substitute (bundled, or --substitute DIR) on fresh colour `classic` and on images the `captcha`
   package draws itself (its own `secrets`, not ours: texts from a seeded generator).
2. A pool of colour `classic` under a preset (farm generate's default; --set NAME=VALUE over it) and a
   grey pool of the same captchas under farm generate's defaults, the grey default the colour pool is
   judged against: the BT.601 grey of each colour one (the built-in `classic_grey`, the colour scheme's
   luminance, so with the default preset the two differ only in colour). Every zoo solver
   reads both: the grey pool after each clean-up chain, the colour pool after every grey conversion
   and channel choice alone and before each chain (farm.core.preprocess.colour_chains).
Settings are chosen on the donors' rows; the held-out rows report.
Last lines: `substitute_colour`, `substitute_package`, and `colour_minus_grey_worst: <the largest, over
held-out solvers, of (worst chain on colour, any conversion) - (worst chain on grey)>`: <= 0 meets the goal.
"""

import argparse
import json
import tempfile

import numpy as np
from captcha.image import ImageCaptcha

from benchmarks.cleanup import setting
from farm.core.checkpoint import load_solver, read_solver_dir
from farm.core.preprocess import CHAINS
from farm.core.presets import DEFAULT_PRESET, PRESETS
from farm.core.schemes import get_scheme
from farm.core.spec import PoolSpec
from farm.core.zoo import HELD_OUT, members, zoo_path
from farm.core.zoo_loading import load_member
from farm.ops.evaluate import load_pool, pool_report, scheme_accuracy, sequence_accuracy
from farm.ops.shard import attack_solvers
from farm.ops.submit import generate_pool
from farm.storage import registry
from farm.storage.config import secret
from farm.storage.store import LocalStore


def package_accuracy(solver, count: int, seed: int) -> float:
    """The solver's accuracy on `count` images the captcha package draws itself (4 characters of the alphabet)."""
    alphabet = get_scheme("classic").alphabet
    rng = np.random.default_rng(seed)
    texts = ["".join(alphabet[i] for i in rng.integers(0, len(alphabet), 4)) for _ in range(count)]
    package = ImageCaptcha()
    images = [np.asarray(package.generate_image(t)) for t in texts]
    return sequence_accuracy(solver.read(images), texts)


def make_pool(store, scheme: str, count: int, seed: int, preset: str, changes: dict, substitute) -> str:
    spec = PoolSpec.from_preset(preset, count=count, scheme=scheme, seed=seed, **changes).validate()
    summary = generate_pool(store, scheme, spec, attack_solvers(spec, substitute), secret(store), processes=1,
                            progress=False)
    print(f"{scheme}: {summary['count']} captchas in {summary['seconds']:.0f} s, substitute "
          f"{summary['substitute_accuracy_clean']:.1%} clean -> {summary['substitute_accuracy_adversarial']:.1%}",
          flush=True)
    return scheme


def mean(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="captchas per pool")
    parser.add_argument("--read", type=int, default=500, help="fresh captchas and package images the substitute reads")
    parser.add_argument("--seed", type=int, default=7, help="seed of the pools' clean captchas")
    parser.add_argument("--substitute", help="a checkpoint folder [default: the bundled substitute]")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                        help="the colour pool's preset (the grey pool's is always the default)")
    parser.add_argument("--set", type=setting, action="append", default=[], metavar="NAME=VALUE",
                        help="a setting over the preset's (repeatable)")
    parser.add_argument("--chain", action="append", help="clean-up chains [default: farm.core.preprocess.CHAINS]")
    parser.add_argument("--skip-read", action="store_true", help="skip part 1")
    parser.add_argument("--json", help="write every table here")
    args = parser.parse_args()
    substitute = load_solver(*read_solver_dir(args.substitute)) if args.substitute else load_solver(*registry.bundled())
    out = {"substitute": substitute.version}
    if not args.skip_read:
        fresh = scheme_accuracy(substitute, ["classic"], args.read, seed=args.seed)
        out["substitute_colour"] = fresh["classic"]["accuracy"]
        out["substitute_package"] = package_accuracy(substitute, args.read, args.seed)
        print(f"substitute {substitute.version}: fresh colour classic {out['substitute_colour']:.1%}, "
              f"the package's own images {out['substitute_package']:.1%} ({args.read} each)", flush=True)
    trained = [m for m in members() if (zoo_path() / m.name / "card.json").exists()]
    solvers, roles = {m.name: load_member(m.name) for m in trained}, {m.name: m.role for m in trained}
    chains = ["none", *(args.chain or CHAINS)]
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        pools = (("classic_grey", DEFAULT_PRESET, {}), ("classic", args.preset, dict(args.set)))
        for scheme, preset, changes in pools:
            pool = make_pool(store, scheme, args.count, args.seed, preset, changes, substitute)
            records, adversarial, clean = load_pool(store, pool)
            reports[scheme] = pool_report(solvers, roles, records, adversarial, clean, chains, progress=True)
            reports[scheme]["ssim_glyph"] = round(mean(records, "ssim_glyph"), 4)
            if scheme == "classic":
                reports[scheme]["ssim_glyph_colour"] = round(mean(records, "ssim_glyph_colour"), 4)
    grey, colour = reports["classic_grey"], reports["classic"]
    print(f"glyph-region SSIM: grey {grey['ssim_glyph']:.3f}; colour, luminance {colour['ssim_glyph']:.3f}, "
          f"colour {colour['ssim_glyph_colour']:.3f}")
    conversions = colour["conversions"]
    print("held-out accuracy on adversarial captchas (clean in brackets): as served, then the worst chain")
    print(f"{'solver':24s} {'grey as is':>12s} {'grey worst':>12s} {'colour as is':>13s}"
          + "".join(f"{c:>12s}" for c in conversions))
    gaps = {}
    for name in solvers:
        g, c = grey["accuracy"][name], colour["accuracy"][name]
        per = c["worst_per_conversion"]
        print(f"{name + ' (' + roles[name] + ')':24s} {g['adversarial']['none']:12.1%} {g['worst']['adversarial']:12.1%} "
              f"{c['adversarial']['none']:13.1%}" + "".join(f"{per[k]['adversarial']:12.1%}" for k in conversions))
        print(f"{'  worst chain':24s} {'':12s} {g['worst']['chain']:>12s} {'':13s}"
              + "".join(f"{per[k]['chain'].split('>', 1)[-1] if '>' in per[k]['chain'] else '-':>12s}"
                        for k in conversions))
        gaps[name] = round(c["worst"]["adversarial"] - g["worst"]["adversarial"], 4)
    out.update(reports=reports, gaps=gaps)
    donors = [gaps[n] for n in solvers if roles[n] != HELD_OUT]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if "substitute_colour" in out:
        print(f"substitute_colour: {out['substitute_colour']:.3f}")
        print(f"substitute_package: {out['substitute_package']:.3f}")
    if donors:
        print(f"donors_colour_minus_grey_worst: {max(donors):+.3f}")
    print(f"colour_minus_grey_worst: {max(gaps[n] for n in solvers if roles[n] == HELD_OUT):+.3f}")


if __name__ == "__main__":
    main()
