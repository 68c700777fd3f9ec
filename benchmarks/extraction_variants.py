"""Which answers should the fine-tune learn from? Variants of model extraction against one bot, paired.

A bot (`farm attacker train`) answers N captchas perturbed against the bundled substitute v1;
each variant fine-tunes v1 on a different share of those answers (farm.finetune.fit, with the
guard of `farm finetune`); every resulting substitute perturbs the same fresh clean captchas, and
the bot reads them. Paired, like benchmarks/arms_race.py: `only b/n` counts the captchas the bot
solved only against v1 / only against the variant. Everything stays in memory; one core.

Variants: `mistakes` (only the answers the bot got wrong: what `farm finetune` does), `all`
answers (`--all-answers`), `twins` (all, plus each answered captcha's clean twin with its true
text), `survivors` (only those it got right: its robustness), `strong` (all, lr 3e-4 and half
replay). Held-out agreement, which stops training, is measured on all held-out answers.
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.arms_race import SETTINGS, discordant
from farm import registry
from farm.checkpoint import load_solver_dir
from farm.dataset import VALIDATION, render_set
from farm.defaults import FinetuneConfig
from farm.finetune import agreement, fit, input_bytes
from farm.pool import PoolSpec, perturb, render_shard
from farm.store import LocalStore

VARIANTS = ("mistakes", "all", "twins", "survivors", "strong")


def captchas(setting: str, count: int, seed: int):
    spec = PoolSpec(count=count, seed=seed, shard_size=count, **SETTINGS[setting])
    return spec, render_shard(spec, 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacker", type=Path, required=True, help="the bot's folder (`farm attacker train --out`)")
    parser.add_argument("--answers", type=int, default=1000, help="N: answers the bot gives (a fifth held out)")
    parser.add_argument("--pool-size", type=int, default=400, help="fresh captchas each substitute perturbs")
    parser.add_argument("--seed", type=int, default=201, help="seed of the fresh captchas (another: a replicate)")
    parser.add_argument("--setting", choices=SETTINGS, default="middle", help="how the captchas are perturbed")
    parser.add_argument("--only", nargs="*", choices=VARIANTS, help="run these variants only")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        registry.ensure_current(store)
        v1, bot = registry.load(store), load_solver_dir(args.attacker)
    size = (v1.model.config.input_height, v1.model.config.input_width)

    def read(solver, images):
        return solver.read(input_bytes(solver, list(images)).float().div(255))

    def solved_against(substitute, spec, shard):
        return [r == t for r, t in zip(read(bot, perturb(spec, shard, [substitute], 0)), shard.texts)]

    spec_q, queries = captchas(args.setting, args.answers, seed=101)
    adversarial = perturb(spec_q, queries, [v1], 0)
    answers = read(bot, adversarial)
    usable = []  # what farm finetune keeps: answers that are labels of the substitute's charset
    for i, answer in enumerate(answers):
        try:
            v1.charset.validate(v1.charset.normalize(answer))
            usable.append(i)
        except ValueError:
            pass
    held = usable[::5]
    train = [i for k, i in enumerate(usable) if k % 5]
    held_images, held_answers = input_bytes(v1, [adversarial[i] for i in held]), [answers[i] for i in held]
    spec_e, fresh = captchas(args.setting, args.pool_size, args.seed)
    on_v1 = solved_against(v1, spec_e, fresh)
    guard = render_set({"classic": 1.0}, 300, 0, size, VALIDATION, 0)
    print(f"bot: reads {np.mean([a == t for a, t in zip(answers, queries.texts)]):.1%} of the {args.answers} answered "
          f"captchas ({len(usable)} usable), {np.mean(on_v1):.1%} of the fresh v1 pool "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"{'variant':>10} {'answers':>7} {'agreement':>15} {'clean classic':>15} {'bot: new pool':>14} "
          f"{'only b/n':>9}", flush=True)
    rows = []
    for name in args.only or VARIANTS:
        chosen = {"mistakes": [i for i in train if answers[i] != queries.texts[i]],
                  "survivors": [i for i in train if answers[i] == queries.texts[i]]}.get(name, train)
        images = input_bytes(v1, [adversarial[i] for i in chosen])
        labels = [answers[i] for i in chosen]
        if name == "twins":
            images = torch.cat([images, input_bytes(v1, [queries.images[i] for i in chosen])])
            labels += [queries.texts[i] for i in chosen]
        config = FinetuneConfig(workers=1)
        if name == "strong":
            config = replace(config, lr=3e-4, replay=0.5)
        v2 = fit(v1, images, labels, held_images, held_answers, config, progress=False, guard=guard)
        on_v2 = solved_against(v2, spec_e, fresh)
        row = {"variant": name, "answers": len(chosen), "best_step": v2.card["best_step"],
               "agreement": [agreement(v1, held_images, held_answers), agreement(v2, held_images, held_answers)],
               "clean": [agreement(v1, guard.images, guard.texts), agreement(v2, guard.images, guard.texts)],
               "bot_v1": float(np.mean(on_v1)), "bot_new": float(np.mean(on_v2)),
               "only": discordant(on_v1, on_v2)}
        rows.append(row)
        unchanged = " (no step qualified: v1)" if not row["best_step"] else ""
        print(f"{name:>10} {len(chosen):>7} {row['agreement'][0]:>6.1%} -> {row['agreement'][1]:<6.1%} "
              f"{row['clean'][0]:>6.1%} -> {row['clean'][1]:<6.1%} {row['bot_new']:>14.1%} {row['only']:>9}{unchanged}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"seconds: {time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
