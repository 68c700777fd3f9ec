"""What each transfer technique adds on solvers the perturbation was not built from.

Generates the same clean `classic` captchas under each setting, then reads them with the
substitute, the zoo's donors and its held-out solvers, as they are and after attacker
preprocessing. Settings are chosen on donors; held-out figures are reported, never tuned on.
Last line: `held_out_max_accuracy: <the best-reading held-out solver's accuracy under farm generate's defaults>`.
"""

import argparse
import json
import tempfile

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.storage.config import secret
from farm.ops.evaluate import load_pool, pool_accuracy
from farm.ops.submit import generate_pool
from farm.core.attacks.settings import declaration
from farm.core.presets import PRESETS
from farm.core.spec import PoolSpec
from farm.core.preprocess import PREPROCESSING
from farm.storage.store import LocalStore
from farm.core.zoo import members, zoo_path
from farm.core.zoo_loading import load_member
from farm.ops.shard import attack_solvers

# Each setting changes the paper preset (plain iterative, 8/255, mask background); every method takes --steps's
BUDGET = {"mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255}  # large off the glyphs, small on them
SWITCHES = {"diversity": 0.7, "smoothing": 2.0}
ALL = {"method": "momentum", **SWITCHES, "early_stop": False}
RECOMMENDED = PRESETS["recommended"]
SETTINGS = {
    "clean": {"method": "none"},
    "iterative 8/255 full": {"method": "iterative", "mask": "full", "eps": 8 / 255},
    "iterative two-level": {"method": "iterative", **BUDGET},
    "+no early stop": {"method": "iterative", "early_stop": False, **BUDGET},
    "+momentum": {"method": "momentum", "early_stop": False, **BUDGET},
    "+momentum+DI": {"method": "momentum", "diversity": 0.7, "early_stop": False, **BUDGET},
    "+momentum+TI": {"method": "momentum", "smoothing": 2.0, "early_stop": False, **BUDGET},
    "+momentum+DI+TI glyph 16/255": {**ALL, **BUDGET, "eps_glyph": 16 / 255},
    "strokes 32/255 +momentum+DI+TI": {**ALL, "mask": "strokes", "eps": 32 / 255},
    "+ensemble": {"method": "iterative", "ensemble": ("crnn-b", "resnet-a"), "early_stop": False, **BUDGET},
    "+all": {**ALL, "ensemble": ("crnn-b", "resnet-a"), **BUDGET},
    "+all glyph 16/255": {**ALL, "ensemble": ("crnn-b", "resnet-a"), **BUDGET, "eps_glyph": 16 / 255},
    "farm generate default": RECOMMENDED,  # + momentum + DI + TI, the row that chose it (its own 20 steps)
    "default robust": {**{k: v for k, v in RECOMMENDED.items() if k != "early_stop"}, "method": "robust"},  # gradients
    # through attacker preprocessing (robust spends every step)
    "+all robust": {**SWITCHES, "method": "robust", "ensemble": ("crnn-b", "resnet-a"), **BUDGET},
}


def spec_of(fields: dict, count: int, steps: int) -> PoolSpec:
    """A setting's spec: the paper preset with the setting's changes, and `steps` where the method takes steps."""
    if "steps" in declaration(fields.get("method", PRESETS["paper"]["method"])):
        fields = {"steps": steps, **fields}
    return PoolSpec.from_preset("paper", count=count, shard_size=count, seed=7, **fields).validate()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="settings to run (default: all)")
    parser.add_argument("--preprocess", action="store_true", help="also after each attacker preprocessing")
    parser.add_argument("--json", help="write the full table here")
    args = parser.parse_args()
    substitute = load_solver(*registry.bundled())
    trained = [m for m in members() if (zoo_path() / m.name / "card.json").exists()]
    solvers = {"substitute": substitute, **{m.name: load_member(m.name) for m in trained}}
    roles = {"substitute": "substitute", **{m.name: m.role for m in trained}}
    preps = ["none", *PREPROCESSING] if args.preprocess else ["none"]
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        for name, fields in SETTINGS.items():
            if args.only and name not in args.only:
                continue
            spec = spec_of(fields, args.count, args.steps)
            pool = f"t{len(table)}"
            summary = generate_pool(store, pool, spec, attack_solvers(spec, substitute), secret(store), progress=False)
            records, adversarial, clean = load_pool(store, pool)
            accuracy = pool_accuracy(solvers, records, adversarial, clean, preps)
            table[name] = {"accuracy": accuracy, "ssim": summary["mean_ssim"],
                           "ssim_glyph": sum(r["ssim_glyph"] for r in records) / len(records),
                           "linf": max(r["linf"] for r in records), "seconds": summary["seconds"]}
            row = " ".join(f"{s}:{accuracy[s]['adversarial']['none']:.0%}" for s in solvers)
            print(f"{name:22s} ssim {table[name]['ssim']:.3f} glyph {table[name]['ssim_glyph']:.3f} "
                  f"linf {table[name]['linf'] * 255:4.0f}/255 | {row}", flush=True)
            if args.preprocess:
                for prep in preps[1:]:
                    cells = " ".join(f"{s}:{accuracy[s]['adversarial'][prep]:.0%}" for s in solvers)
                    print(f"{'':22s} after {prep:9s} | {cells}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"roles": roles, "settings": {k: {kk: list(vv) if isinstance(vv, tuple) else vv
                                                        for kk, vv in v.items()} for k, v in SETTINGS.items()},
                       "table": table}, f, indent=2)
    held_out = [s for s, r in roles.items() if r == "held-out"]
    if held_out and "farm generate default" in table:
        row = table["farm generate default"]["accuracy"]
        print(f"held_out_max_accuracy: {max(row[s]['adversarial']['none'] for s in held_out):.3f}")


if __name__ == "__main__":
    main()
