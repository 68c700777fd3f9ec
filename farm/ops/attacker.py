"""Simulated attackers: bots trained apart from the substitute that answer pools as platforms report.

Model extraction is measured end to end with them: `train_attacker` makes a bot (its own seed and
architecture, clean captchas only), `answer_pool` makes it answer a pool and writes the records a
platform would send for a flagged user, `adapt` retrains it on labelled adversarial captchas, as a
bot operator does after being blocked. Attackers live in local folders, never in the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from farm.core.checkpoint import Solver, input_bytes, save_solver_dir
from farm.exceptions import PoolError, SettingError
from farm.ops.finetune import FinetuneConfig, fit
from farm.ops.train import TrainConfig, train
from farm.storage.pools import pool_images

__all__ = ["AttackerRecipe", "RECIPES", "OPERATOR", "train_attacker", "answer_pool", "adapt", "pool_batch"]


@dataclass(frozen=True)
class AttackerRecipe:
    """How a simulated bot is trained: small, on clean `classic` captchas only."""

    architecture: str = "resnet_ctc"
    seed: int = 101
    steps: int = 3000
    samples: int = 48_000
    lr: float = 2e-3
    model: tuple[tuple[str, object], ...] = (("input_height", 32), ("input_width", 96), ("channels", (32, 64, 96)))


RECIPES = {"full": AttackerRecipe(), "quick": AttackerRecipe(steps=1500, samples=24_000)}


def train_attacker(out: Path, recipe: AttackerRecipe = AttackerRecipe(), progress: bool = True) -> dict:
    """Train a bot into `out` (model.safetensors, card.json); returns its card."""
    config = TrainConfig(mix={"classic": 1.0}, samples=recipe.samples, steps=recipe.steps, seed=recipe.seed,
                         lr=recipe.lr, architecture=recipe.architecture, model=dict(recipe.model),
                         eval_every=max(500, recipe.steps // 4), val_count=200)
    return train(config, Path(out), progress=progress, command=f"farm attacker train --out {out}", final_count=500,
                 card_fields={"attacker": {"recipe": recipe.architecture, "seed": recipe.seed}})


def pool_batch(store, pool: str, solver: Solver, limit: int | None = None):
    """(key records, adversarial images as uint8 (N, 1, H, W) at the solver's input size)."""

    records, _, adversarial = pool_images(store, pool, limit)
    return records, input_bytes(solver, adversarial)


def answer_pool(store, pool: str, attacker: Solver, count: int | None = None, risk: str = "attacker") -> dict:
    """The bot answers the pool's first `count` captchas: {"records": answer lines, "accuracy": its score}.

    Records carry what a platform reports (pool, captcha id, the bot's answer, risk, time); the
    accuracy, and `solved` (captcha by captcha, in index order, so two pools of one seed pair up),
    come from the pool's keys, which only a simulation may look at.
    """
    if count is not None and count <= 0:
        raise SettingError(f"count: must be positive (got {count})")
    records, images = pool_batch(store, pool, attacker, count)
    if count is not None and len(records) < count:
        raise PoolError(f"pool: {pool!r} holds {len(records)} complete captchas, fewer than the {count} asked for")
    readings = attacker.read(images.float().div(255))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [{"pool": pool, "captcha_id": r["id"], "answer": reading or "?", "risk": risk, "time": now}
             for r, reading in zip(records, readings)]
    solved = [reading == r["answer"] for reading, r in zip(readings, records)]
    return {"records": lines, "accuracy": sum(solved) / len(solved), "solved": solved, "count": len(lines)}


def write_answers(path: Path, records: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


# How an operator retrains its bot on labelled captchas: 600 steps, lr 1e-3, 30% clean replay.
OPERATOR = FinetuneConfig(steps=600, lr=1e-3, replay=0.3, eval_every=100, patience=3)


# What a card says of the weights it describes, not of weights adapted from them: the file's own fields, and a
# published version's measures, lineage and generation (a hardened copy listed with the substitute's 97% clean
# accuracy, its family and its copies would be three wrong statements).
NOT_CARRIED = frozenset({"sha256", "format", "config", "architecture", "charset", "input_size",
                         "version", "parent", "generation", "published", "held_back", "refused", "copy_of",
                         "metrics", "training", "family", "hardened", "hardened_on", "ensemble", "target_schemes",
                         "generator"})


def adapt(attacker: Solver, store, pools: list[str], count: int, out: Path, steps: int | None = None,
          progress: bool = True, recipe: FinetuneConfig = OPERATOR) -> dict:
    """Retrain the bot on `count` labelled adversarial captchas of `pools` (mixed with clean replay), as `recipe`
    says (`steps`: other than the recipe's)."""
    images, labels = [], []
    for pool in pools:
        need = count - len(labels)
        if need <= 0:
            break
        records, batch = pool_batch(store, pool, attacker, need)
        images.append(batch)
        labels += [r["answer"] for r in records]
    if len(labels) < count:
        raise PoolError(f"pools: {', '.join(pools)} hold {len(labels)} complete captchas, fewer than {count}")
    images = torch.cat(images)
    held = torch.zeros(len(labels), dtype=torch.bool)
    held[::10] = True
    rows, held_rows = (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
    config = recipe if steps is None else replace(recipe, steps=steps)
    solver = fit(attacker, images[rows], [labels[i] for i in rows.tolist()], images[held_rows],
                 [labels[i] for i in held_rows.tolist()], config, progress)
    history = solver.card.pop("history")
    card = {k: v for k, v in attacker.card.items() if k not in NOT_CARRIED}
    card.update(adapted={"pools": pools, "count": count, "best_step": solver.card.pop("best_step"),
                         "history": history}, parent=attacker.card.get("sha256"))
    return save_solver_dir(solver.model, solver.charset, out, **card)
