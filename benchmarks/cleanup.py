"""How much of a default pool the attacker's clean-up gives back to the held-out solvers.

Generates `classic` captchas under `farm generate`'s defaults (or --preset, with --set NAME=VALUE over it:
e.g. `--preset edge --set dot_placement=random`, its control; or reads --pool from FARM_STORE),
then every held-out zoo solver reads them, clean and adversarial, as they are and after each
clean-up chain of the attacker's toolbox (farm.core.preprocess.CHAINS, or --chain). Held-out solvers
only report: no setting is chosen by looking at this table.
Last line: `worst_heldout_after_cleanup: <the largest share of adversarial captchas any held-out
solver reads after its worst chain>`.
"""

import argparse
import json
import sys
import tempfile

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.storage.config import secret
from farm.ops.evaluate import load_pool, pool_accuracy, worst_chain
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.core.attacks.settings import SETTINGS
from farm.core.preprocess import CHAINS, parse_chains
from farm.core.presets import DEFAULT_PRESET, PRESETS
from farm.storage.store import LocalStore, open_store
from farm.core.zoo import HELD_OUT, members, zoo_path
from farm.core.zoo_loading import load_member
from farm.ops.shard import attack_solvers


def held_out_solvers() -> dict:
    trained = [m.name for m in members(HELD_OUT) if (zoo_path() / m.name / "card.json").exists()]
    if not trained:
        sys.exit("no held-out zoo solver is trained here; run `farm zoo train position-a` (and the others)")
    return {name: load_member(name) for name in trained}


def default_pool(store, count: int, seed: int, processes: int, preset: str = DEFAULT_PRESET,
                 changes: dict | None = None) -> str:
    """A pool of `count` classic captchas under a preset (farm generate's default), attacked by the bundled
    substitute and the preset's donors."""
    spec = PoolSpec.from_preset(preset, count=count, scheme="classic", seed=seed, **(changes or {})).validate()
    substitute = load_solver(*registry.bundled())
    summary = generate_pool(store, "cleanup", spec, attack_solvers(spec, substitute), secret(store), processes=processes)
    print(f"generated {summary['count']} captchas in {summary['seconds']:.0f} s: mean SSIM {summary['mean_ssim']:.3f}, "
          f"substitute {summary['substitute_accuracy_clean']:.1%} clean -> "
          f"{summary['substitute_accuracy_adversarial']:.1%} adversarial", flush=True)
    return "cleanup"


def setting(text: str) -> tuple[str, object]:
    """NAME=VALUE of a declared setting (farm.core.attacks.settings), cast to its type."""
    name, _, value = text.partition("=")
    if name not in SETTINGS:
        raise argparse.ArgumentTypeError(f"{name}: no method takes it (settings: {', '.join(SETTINGS)})")
    kind = SETTINGS[name].kind
    return name, (value in ("1", "true", "on") if kind is bool else kind(value))


def print_table(table: dict, chains: list[str]) -> None:
    width = max(len(c) for c in chains) + 2
    print("held-out accuracy, clean -> adversarial")
    print(f"{'chain':{width}s}" + "".join(f"{name:>17s}" for name in table))
    for chain in chains:
        print(f"{chain:{width}s}" + "".join(f"   {row['clean'][chain]:6.1%} ->{row['adversarial'][chain]:6.1%}"
                                            for row in table.values()))
    print("worst chain per held-out solver (the one under which it reads the most adversarial captchas)")
    for name, row in table.items():
        print(f"  {name:14s} {row['worst']['chain']:{width}s} {row['worst']['clean']:6.1%} clean -> "
              f"{row['worst']['adversarial']:6.1%} adversarial")
    print("largest fall below clean, over the chains (a control's test: <= 10 points)")
    for name, row in table.items():
        print(f"  {name:14s} {max(row['clean'][c] - row['adversarial'][c] for c in chains):6.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="captchas in the generated pool")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated pool's clean captchas")
    parser.add_argument("--pool", help="read this pool of FARM_STORE (or --store) instead of generating one")
    parser.add_argument("--store", help="with --pool: the store URL [default: FARM_STORE]")
    parser.add_argument("--chain", action="append", help="a clean-up chain, e.g. 'median3>otsu>open3' "
                                                         "(repeatable; default: farm.core.preprocess.CHAINS)")
    parser.add_argument("--processes", type=int, default=1, help="generation processes (the machine is shared)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS), help="the generated pool's preset")
    parser.add_argument("--set", type=setting, action="append", default=[], metavar="NAME=VALUE",
                        help="a setting over the preset's (repeatable), e.g. dot_placement=random")
    parser.add_argument("--json", help="write the full table here")
    args = parser.parse_args()
    try:
        chains = [c.name for c in parse_chains(["none", *(args.chain or CHAINS)])]
    except ValueError as e:
        parser.error(f"--{e}")
    if len(chains) < 2:
        parser.error("--chain: give at least one clean-up chain besides none")
    solvers = held_out_solvers()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.store) if args.pool else LocalStore(tmp)
        pool = args.pool or default_pool(store, args.count, args.seed, args.processes, args.preset, dict(args.set))
        records, adversarial, clean = load_pool(store, pool)
    table = pool_accuracy(solvers, records, adversarial, clean, chains, progress=True)
    for row in table.values():
        row["worst"] = worst_chain(row)
    print(f"pool {pool}: {len(records)} captchas, glyph-region SSIM "
          f"{sum(r['ssim_glyph'] for r in records) / len(records):.3f}")
    print_table(table, chains)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pool": pool, "count": len(records), "chains": chains[1:], "accuracy": table}, f, indent=2)
    print(f"worst_heldout_after_cleanup: {max(row['worst']['adversarial'] for row in table.values()):.3f}")


if __name__ == "__main__":
    main()
