"""Which answers should the fine-tune learn from? Variants of model extraction against one bot, paired.

A bot (`farm attacker train`) answers N captchas perturbed against the bundled substitute v1;
each variant fine-tunes v1 on a different share of those answers (farm.ops.finetune.fit, with the
guard of `farm finetune`); every resulting substitute perturbs the same fresh clean captchas, and
the bot reads them. Paired, like benchmarks/arms_race.py: `only b/n` counts the captchas the bot
solved only against v1 / only against the variant. Everything stays in memory; one core.

Variants: `mistakes` (only the answers the bot got wrong: what `farm finetune` does), `all`
answers (`--all-answers`), `twins` (all, plus each answered captcha's clean twin with its true
text), `survivors` (only those it got right: its robustness), `strong` (all, lr 3e-4 and half
replay), `held-mistakes` (mistakes, and training stops on agreement with the held-out mistakes
only), `iterated` (mistakes, in four rounds of N/4 answers: each round's captchas are perturbed
against the latest fine-tune, which then restarts from v1 on every mistake so far, as in
Papernot et al.'s substitute training), `synthetic` (a control: the mistakes' images labelled
with mistakes of the same shape, the true text with as many characters changed, dropped or added
at random as the bot's answer has, so no longer the bot's: whatever gain remains is not
extraction; it trains as many steps as `mistakes` kept, and is kept if it then agrees better with
the held-out answers within the guard, as any fine-tune), `self` (the same control with v1's own
readings of those images: its own plausible confusions, no bot in them), `shifted` (mistakes,
each also shifted by up to 2 pixels three times: a bot's misreading should survive that, and a
few hundred answers become four times as many). Otherwise held-out agreement, which stops
training, is measured on all held-out answers; `on mistakes` counts only the held-out answers
the bot got wrong: agreeing there is extraction proper.
"""

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.arms_race import SETTINGS, discordant
from farm.storage import registry
from farm.core.checkpoint import load_solver_dir
from farm.core.dataset import VALIDATION, render_set
from farm.core.defaults import FinetuneConfig
from farm.core.checkpoint import input_bytes
from farm.ops.finetune import agreement, fit
from farm.core.spec import PoolSpec
from farm.ops.shard import perturb, render_shard
from farm.core.seeds import Seeds
from farm.storage.store import LocalStore

VARIANTS = ("mistakes", "all", "twins", "survivors", "strong", "held-mistakes", "iterated", "synthetic", "self",
            "shifted")
ROUNDS = 4  # of `iterated`


def made_up_mistake(truth: str, answer: str, alphabet: str, rng: random.Random) -> str:
    """The true text misread as much as `answer` (a mistake) misreads it, at random: as many characters
    dropped or added when the lengths differ, else as many changed."""
    chars = list(truth)
    while len(chars) > len(answer):
        chars.pop(rng.randrange(len(chars)))
    while len(chars) < len(answer):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
    changed = sum(a != b for a, b in zip(truth, answer)) if len(truth) == len(answer) else 0
    for k in rng.sample(range(len(chars)), changed):
        chars[k] = rng.choice([c for c in alphabet if c != chars[k]])
    return "".join(chars)  # never the truth: another length, or at least one character changed


def captchas(setting: str, count: int, seed: int):
    spec = PoolSpec.from_preset("paper", count=count, seed=seed, shard_size=count, **SETTINGS[setting])
    return spec, render_shard(spec, 0, Seeds(b"benchmark"))


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
    if args.only and {"synthetic", "self"} & set(args.only) and "mistakes" not in args.only:
        parser.error("--only synthetic/self need mistakes too: the controls train as many steps as it kept")
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

    def label(answer):
        """What farm finetune keeps: answers that are labels of the substitute's charset."""
        try:
            return v1.charset.label(answer)
        except ValueError:
            return None

    def iterated(config):
        """ROUNDS rounds of N/ROUNDS answers to captchas perturbed against the latest fine-tune."""
        current, train_pairs, held_pairs = v1, [], []
        for k in range(ROUNDS):
            spec_k, shard = captchas(args.setting, args.answers // ROUNDS, seed=301 + k)
            attacked = perturb(spec_k, shard, [current], 0)
            for j, (answer, text) in enumerate(zip(read(bot, attacked), shard.texts)):
                if label(answer) is None:
                    continue
                if j % 5 == 0:
                    held_pairs.append((attacked[j], answer))
                elif answer != text:
                    train_pairs.append((attacked[j], answer))
            current = fit(v1, input_bytes(v1, [i for i, _ in train_pairs]), [a for _, a in train_pairs],
                          input_bytes(v1, [i for i, _ in held_pairs]), [a for _, a in held_pairs], config,
                          progress=False, guard=guard)
            print(f"{'':>13} round {k + 1}: {len(train_pairs)} mistakes, best step {current.card['best_step']}",
                  flush=True)
        return current, len(train_pairs)

    spec_q, queries = captchas(args.setting, args.answers, seed=101)
    adversarial = perturb(spec_q, queries, [v1], 0)
    answers = read(bot, adversarial)
    usable = [i for i, answer in enumerate(answers) if label(answer) is not None]
    held = usable[::5]
    train = [i for k, i in enumerate(usable) if k % 5]
    held_images, held_answers = input_bytes(v1, [adversarial[i] for i in held]), [answers[i] for i in held]
    wrong = [k for k, i in enumerate(held) if answers[i] != queries.texts[i]]
    held_mistakes = held_images[wrong], [held_answers[k] for k in wrong]  # agreeing on these is extraction
    spec_e, fresh = captchas(args.setting, args.pool_size, args.seed)
    on_v1 = solved_against(v1, spec_e, fresh)
    guard = render_set({"classic": 1.0}, FinetuneConfig.guard_count, 0, size, VALIDATION, 0)  # as farm finetune's
    print(f"bot: reads {np.mean([a == t for a, t in zip(answers, queries.texts)]):.1%} of the {args.answers} answered "
          f"captchas ({len(usable)} usable), {np.mean(on_v1):.1%} of the fresh v1 pool "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"{'variant':>13} {'answers':>7} {'agreement':>15} {'on mistakes':>15} {'clean classic':>15} "
          f"{'bot: new pool':>14} {'only b/n':>9}", flush=True)
    rows = []
    mistakes = [i for i in train if answers[i] != queries.texts[i]]
    for name in sorted(args.only, key=VARIANTS.index) if args.only else VARIANTS:
        chosen = {"all": train, "twins": train, "strong": train,
                  "survivors": [i for i in train if answers[i] == queries.texts[i]]}.get(name, mistakes)
        images = input_bytes(v1, [adversarial[i] for i in chosen])
        labels = [answers[i] for i in chosen]
        if name == "synthetic":
            labels = [made_up_mistake(queries.texts[i], answers[i], v1.charset.alphabet, random.Random(i))
                      for i in chosen]
        if name == "self":
            own = read(v1, [adversarial[i] for i in chosen])
            keep = [k for k, (i, r) in enumerate(zip(chosen, own)) if label(r) and r != queries.texts[i]]
            images, labels = images[keep], [own[k] for k in keep]
            chosen = [chosen[k] for k in keep]
        if name == "shifted":
            rng = torch.Generator().manual_seed(0)
            moves = torch.randint(-2, 3, (3, len(images), 2), generator=rng).tolist()
            images = torch.cat([images] + [torch.stack([image.roll(tuple(move), dims=(1, 2))
                                                        for image, move in zip(images, copy)]) for copy in moves])
            labels = labels * 4
        if name == "twins":
            images = torch.cat([images, input_bytes(v1, [queries.images[i] for i in chosen])])
            labels += [queries.texts[i] for i in chosen]
        config = FinetuneConfig(workers=1)
        if name == "strong":
            config = replace(config, lr=3e-4, replay=0.5)
        stop_on = held_mistakes if name == "held-mistakes" else (held_images, held_answers)
        if name in ("synthetic", "self"):  # as many steps as `mistakes` kept, then one look at the held-out answers
            steps = max(next(r["best_step"] for r in rows if r["variant"] == "mistakes"), 1)
            config = replace(config, steps=steps, eval_every=steps, patience=1)
        if name == "iterated":
            v2, count = iterated(config)
            chosen = range(count)
        else:
            v2 = fit(v1, images, labels, *stop_on, config, progress=False, guard=guard)
        on_v2 = solved_against(v2, spec_e, fresh)
        row = {"variant": name, "answers": len(chosen), "best_step": v2.card["best_step"],
               "agreement": [agreement(v1, held_images, held_answers), agreement(v2, held_images, held_answers)],
               "agreement_on_mistakes": [agreement(v1, *held_mistakes), agreement(v2, *held_mistakes)],
               "clean": [agreement(v1, guard.images, guard.texts), agreement(v2, guard.images, guard.texts)],
               "bot_v1": float(np.mean(on_v1)), "bot_new": float(np.mean(on_v2)),
               "only": discordant(on_v1, on_v2), "history": v2.card["history"]}
        rows.append(row)
        unchanged = " (no step qualified: v1)" if not row["best_step"] else ""
        print(f"{name:>13} {len(chosen):>7} {row['agreement'][0]:>6.1%} -> {row['agreement'][1]:<6.1%} "
              f"{row['agreement_on_mistakes'][0]:>6.1%} -> {row['agreement_on_mistakes'][1]:<6.1%} "
              f"{row['clean'][0]:>6.1%} -> {row['clean'][1]:<6.1%} {row['bot_new']:>14.1%} {row['only']:>9}{unchanged}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"seconds: {time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
