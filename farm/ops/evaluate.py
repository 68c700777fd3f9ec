"""How well solvers read captchas: exact-match accuracy on fresh renders per scheme, and on a pool after clean-ups."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from farm.core.checkpoint import Solver
from farm.core.dataset import EVALUATION, CaptchaStream, batches
from farm.core.model import to_tensor
from farm.core.preprocess import parse_chains
from farm.exceptions import SettingError
from farm.storage.pools import pool_images

__all__ = ["scheme_accuracy", "sequence_accuracy", "load_pool", "pool_accuracy", "chain_accuracy", "worst_chain"]


def sequence_accuracy(readings: list[str], truths: list[str]) -> float:
    """Share of captchas read exactly (the paper's measure)."""
    if not truths:
        return float("nan")
    return sum(r == t for r, t in zip(readings, truths)) / len(truths)


def scheme_accuracy(solver: Solver, schemes: list[str], count: int, seed: int = 0, workers: int = 1,
                    batch_size: int = 100, progress: bool = False, purpose: int = EVALUATION) -> dict:
    """{"<scheme>": {"count", "accuracy"}} on `count` fresh captchas of each scheme."""
    if count <= 0:
        raise SettingError(f"count: must be positive, got {count}")
    size = (solver.model.config.input_height, solver.model.config.input_width)
    results = {}
    for name in schemes:
        batch_size_here = min(batch_size, count)
        stream = CaptchaStream({name: 1.0}, batch_size_here, seed, size, purpose,
                               stop=math.ceil(count / batch_size_here))
        readings, truths = [], []
        bar = tqdm(total=count, desc=f"evaluate {name}", unit="captcha", disable=not progress, leave=False)
        for batch in batches(stream, workers):
            keep = min(len(batch.texts), count - len(truths))
            readings += solver.read(batch.images[:keep])
            truths += [solver.charset.normalize(t) for t in batch.texts[:keep]]  # case-blind readers
            bar.update(keep)
        bar.close()
        results[name] = {"count": len(truths), "accuracy": sequence_accuracy(readings, truths)}
    return results


def load_pool(store, pool: str, limit: int | None = None):
    """(key records, adversarial images (N, 1 or 3, H, W) float, clean images of the same captchas)."""
    records, clean, adversarial = pool_images(store, pool, limit)
    return records, to_tensor(adversarial), to_tensor(clean)


def pool_accuracy(solvers: dict, records: list[dict], adversarial, clean, chains: list[str],
                  progress: bool = False) -> dict:
    """{solver: {"clean": {chain: acc}, "adversarial": {chain: acc}}} over a pool's captchas.

    Each chain's real operations run once per image set and every solver reads the result;
    `none` is the images as they are.
    """
    truths = [r["answer"] for r in records]
    results = {name: {} for name in solvers}
    bar = tqdm(total=2 * len(chains), desc="evaluate pool", unit="chain", disable=not progress, leave=False)
    for label, images in (("clean", clean), ("adversarial", adversarial)):
        for name, row in chain_accuracy(solvers, truths, images, chains, bar, label).items():
            results[name][label] = row
    bar.close()
    return results


def chain_accuracy(solvers: dict, truths: list[str], images, chains: list[str], bar=None, label: str = "") -> dict:
    """{solver: {chain: acc}} of one image set (N, 1, H, W) after each chain; `bar` (tqdm) counts the chains."""
    results = {name: {} for name in solvers}
    for chain in parse_chains(chains):
        if bar is not None:
            bar.set_postfix_str(f"{label} {chain.name}")
        cleaned = torch.cat([chain.apply(images[i:i + 200]) for i in range(0, len(images), 200)])
        for name, solver in solvers.items():
            results[name][chain.name] = round(sequence_accuracy(solver.read(cleaned), truths), 4)
        if bar is not None:
            bar.update()
    return results


def worst_chain(row: dict) -> dict | None:
    """The clean-up under which a solver reads the most adversarial captchas (the first on a tie), or None.

    `row` is one solver's pool_accuracy; the images as they are (`none`) are not a clean-up.
    """
    chains = [c for c in row["adversarial"] if c != "none"]
    if not chains:
        return None
    chain = max(chains, key=lambda c: row["adversarial"][c])  # max keeps the first of equals
    return {"chain": chain, "clean": row["clean"][chain], "adversarial": row["adversarial"][chain]}
