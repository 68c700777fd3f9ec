"""Arms race: does fine-tuning on a bot's answers make the next pool fool that bot?

Round 1: a simulated bot trained on clean captchas answers N captchas of a pool made with
substitute v1; the farm fine-tunes v1 on those answers; the bot then reads a fresh pool made
with the fine-tuned version and one made with v1 (the same clean captchas, paired). Round 2: the
bot adapts on labelled adversarial captchas, as its operator would, and the loop repeats on top
of round 1's best version. Everything runs in a temporary store; pools are made with `farm
generate`'s defaults (--setting weak: iterative 8/255, which a clean-trained bot still reads).
The fine-tune also names the zoo donors that fail where the bot failed; every pool of the new
version is aimed at them too (farm.ops.resemblance). Column `v_base+donors`: the bot on a pool of
v_base joined by the same donors, the control that tells the fine-tune's share from the donors'.
Under each row: the resemblance of the substitute and of each donor to the bot (farm.ops.resemblance).
Before each round's rows: the bot on the same clean captchas perturbed against the bot itself
(white-box), the floor no substitute can go below: what is left above it is transfer's to win.
Column `only b/n`: captchas the bot solved only in the v_base pool / only in the new one, the
pairs that tell a gain from noise. Last line: `extraction_gain: <1 - bot accuracy on the
fine-tuned pool / on the v1 pool>` (round 1, largest N). Goal: >= 0.5 with <= 1,000 answers
while clean accuracy stays within 2 points.

`--adaptive`: the arms race of issue 26 against held-out bots that retrain on labelled captchas of
each generation, and the farm's move between perturbation families: benchmarks/arms_race_adaptive.py
(its docstring holds the measured table).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import arms_race_adaptive
from farm.storage import registry
from farm.storage.answers import ingest
from farm.ops.attacker import RECIPES, adapt, answer_pool, train_attacker
from farm.core.checkpoint import load_solver_dir
from farm.storage.config import secret
from farm.core.presets import PRESETS
from farm.exceptions import FinetuneRefused
from farm.ops.finetune import FinetuneConfig, finetune
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.store import LocalStore
from farm.ops.shard import attack_solvers

# the pools' setting, each as its changes from the paper preset: farm generate's defaults, or a weak one that a
# clean-trained bot still reads often (under the defaults it reads almost none of a v1 pool, which leaves nothing to
# win back), or the defaults' method at a budget between the two, where transfer is partial and the substitute's
# likeness matters
SETTINGS = {"default": PRESETS["recommended"],
            "weak": {"method": "iterative", "mask": "full", "eps": 8 / 255, "steps": 20},
            "middle": {**PRESETS["recommended"], "eps": 12 / 255, "eps_glyph": 4 / 255}}


def discordant(on_base: list[bool], on_new: list[bool]) -> str:
    """Captchas the bot solved only in the v_base pool / only in the new one (the same clean captchas).

    The pairs that differ are all the evidence: with b and n of them, a gain is noise unless
    b and n are far apart (McNemar: |b - n| beyond about 2 * sqrt(b + n)).
    """
    pairs = list(zip(on_base, on_new))
    return f"{sum(x and not y for x, y in pairs)}/{sum(y and not x for x, y in pairs)}"


def share(value: float | None) -> str:
    """A share as a percentage; `-` when nothing was measured (no held-out mistake)."""
    return "-" if value is None else f"{value:.1%}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adaptive", action="store_true", help="the arms race against held-out bots that retrain "
                        "(issue 26): benchmarks.arms_race_adaptive, with --rounds, --adapt, --answers, --test, --bots")
    parser.add_argument("--test", type=int, help="--adaptive: captchas in each generation's test pool")
    parser.add_argument("--bots", help="--adaptive: held-out zoo solvers, comma-separated")
    parser.add_argument("--keep", type=Path, help="--adaptive: keep the store and the bots here (a rerun resumes)")
    parser.add_argument("--anticipate", type=int, default=0, metavar="N", help="--adaptive: the farm's move adapts "
                        "hardened copies on N own captchas per learned family (farm finetune --anticipate)")
    parser.add_argument("--remember", action="store_true", help="--adaptive: the operator keeps every label it bought "
                        "and retrains on all of them each round (default: on the last generation's only)")
    parser.add_argument("--threads", type=int, default=1, help="--adaptive: torch threads and processes for the "
                        "benchmark's pools (the machine's cores when one race runs alone; 1 when two run side by "
                        "side); the move renders in farm finetune's processes (2)")
    parser.add_argument("--quick", action="store_true", help="small bot, N = 250 and 1000, 200-captcha pools")
    parser.add_argument("--attacker", type=Path, help="the bot's folder: reused when it holds one (from `farm attacker "
                        "train`), else the bot is trained into it and kept for the next run")
    parser.add_argument("--answers", type=int, nargs="*", help="N: answers per fine-tune")
    parser.add_argument("--pool-size", type=int, help="captchas in each compared pool")
    parser.add_argument("--adapt", type=int, help="labelled adversarial captchas the bot adapts on")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lr", type=float, help="fine-tune learning rate (default: farm finetune's)")
    parser.add_argument("--replay", type=float, help="fine-tune share of clean replay (default: farm finetune's)")
    parser.add_argument("--all-answers", action="store_true", help="fine-tune on the bot's right answers too")
    parser.add_argument("--donors", type=int, help="donors joined by resemblance (default: farm finetune's)")
    parser.add_argument("--setting", choices=SETTINGS, default="default", help="how every pool is perturbed")
    args = parser.parse_args()
    if args.adaptive:
        arms_race_adaptive.run(args)
        return
    sizes = args.answers or ([250, 1000] if args.quick else [250, 500, 1000])
    pool_size = args.pool_size or (200 if args.quick else 500)
    adapt_count = args.adapt or (1000 if args.quick else 5000)
    tuning = {k: v for k, v in {"lr": args.lr, "replay": args.replay, "donors": args.donors}.items() if v is not None}
    tuning["mistakes_only"] = not args.all_answers
    config = FinetuneConfig(steps=300 if args.quick else 400, guard_count=300 if args.quick else 500, **tuning)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        registry.ensure_current(store)
        bot_dir = args.attacker or Path(tmp) / "bot"
        if not (bot_dir / "card.json").exists():
            train_attacker(bot_dir, RECIPES["quick" if args.quick else "full"], progress=False)
        bot = load_solver_dir(bot_dir)
        print(f"bot: {bot.card['architecture']} reads {bot.card['metrics']['accuracy']['classic']:.1%} of clean classic "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

        def make_pool(name, version, count, seed, ensemble=(), aimed_at=None):
            spec = PoolSpec.from_preset("paper", count=count, seed=seed, shard_size=count, ensemble=ensemble,
                                        **SETTINGS[args.setting])
            solvers = aimed_at or attack_solvers(spec, registry.load(store, version))
            generate_pool(store, name, spec, solvers, secret(store), progress=False)
            return name

        gains = {}
        print(f"{'round':>5} {'N':>5} {'agreement':>15} {'on mistakes':>15} {'clean classic':>15} "
              f"{'bot: v_base pool':>17} {'bot: new pool':>14} {'relative':>8} {'only b/n':>9} {'donors':>9} "
              f"{'v_base+donors':>13}", flush=True)
        for round_ in range(1, args.rounds + 1):
            base = registry.current(store)["version"]
            queries = make_pool(f"r{round_}-queries", base, max(sizes), seed=100 + round_)
            answered = answer_pool(store, queries, bot, max(sizes))
            reference = make_pool(f"r{round_}-base", base, pool_size, seed=200 + round_)
            on_base = answer_pool(store, reference, bot)
            white_box = answer_pool(store, make_pool(f"r{round_}-white-box", None, pool_size, seed=200 + round_,
                                                     aimed_at=[bot]), bot)["accuracy"]
            print(f"round {round_}: the bot reads {on_base['accuracy']:.1%} of a {base} pool and {white_box:.1%} of "
                  f"one aimed at itself (white-box: the floor for any substitute)", flush=True)
            best = None
            for n in sizes:
                data = "".join(json.dumps(r) + "\n" for r in answered["records"][:n]).encode()
                key = ingest(store, data).key
                try:
                    result = finetune(store, [key], base=base, config=config, progress=False)
                except FinetuneRefused as e:
                    print(f"{round_:>5} {n:>5} refused (bot reads {on_base['accuracy']:.1%} of the v_base pool): {e}",
                          flush=True)
                    continue
                new_pool = make_pool(f"r{round_}-n{n}", result["version"], pool_size, seed=200 + round_)
                on_new = answer_pool(store, new_pool, bot)
                donors = tuple(result["ensemble"])
                control = answer_pool(store, make_pool(f"r{round_}-n{n}-control", base, pool_size, seed=200 + round_,
                                                       ensemble=donors), bot)["accuracy"] if donors else None
                registry.promote(store, base)  # the next N starts from the same base
                relative = 1 - on_new["accuracy"] / on_base["accuracy"] if on_base["accuracy"] else 0.0
                b, a = result["before"], result["after"]
                print(f"{round_:>5} {n:>5} {b['agreement']:>6.1%} -> {a['agreement']:<6.1%} "
                      f"{share(b['agreement_on_mistakes']):>6} -> {share(a['agreement_on_mistakes']):<6} "
                      f"{b['clean']['classic']:>6.1%} -> {a['clean']['classic']:<6.1%} {on_base['accuracy']:>17.1%} "
                      f"{on_new['accuracy']:>14.1%} {relative:>8.1%} "
                      f"{discordant(on_base['solved'], on_new['solved']):>9} {','.join(donors) or '-':>9} "
                      f"{share(control):>13}", flush=True)
                if result["resemblance"]:
                    print(f"{'':>11} resemblance (phi of solved flags): " + ", ".join(
                        f"{name} {'-' if score is None else f'{score:.2f}'}"
                        for name, score in result["resemblance"].items()), flush=True)
                gains[round_, n] = relative
                best = result["version"]
            if best:
                registry.promote(store, best)
            if round_ < args.rounds:
                labelled = make_pool(f"r{round_}-adapt", registry.current(store)["version"], adapt_count, seed=300 + round_)
                adapt(bot, store, [labelled], adapt_count, Path(tmp) / f"bot-{round_ + 1}", progress=False)
                bot = load_solver_dir(Path(tmp) / f"bot-{round_ + 1}")
                print(f"bot adapted on {adapt_count} labelled adversarial captchas "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"seconds: {time.perf_counter() - started:.0f}")
    print(f"extraction_gain: {gains.get((1, max(sizes)), 0.0):.3f}")


if __name__ == "__main__":
    main()
