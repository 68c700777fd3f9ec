"""How well solvers read captchas: exact-match sequence accuracy on fresh renders, per scheme."""

from __future__ import annotations

import math

from tqdm import tqdm

from farm.checkpoint import Solver
from farm.dataset import EVALUATION, CaptchaStream, batches

__all__ = ["scheme_accuracy", "sequence_accuracy"]


def sequence_accuracy(readings: list[str], truths: list[str]) -> float:
    """Share of captchas read exactly (the paper's measure)."""
    if not truths:
        return float("nan")
    return sum(r == t for r, t in zip(readings, truths)) / len(truths)


def scheme_accuracy(solver: Solver, schemes: list[str], count: int, seed: int = 0, workers: int = 1,
                    batch_size: int = 100, progress: bool = False, purpose: int = EVALUATION) -> dict:
    """{"<scheme>": {"count", "accuracy"}} on `count` fresh captchas of each scheme."""
    if count <= 0:
        raise ValueError(f"count: must be positive, got {count}")
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
    """(key records, adversarial images (N, 1, H, W) float, clean images of the same captchas)."""
    import torch

    from farm.pool import pool_images

    records, clean, adversarial = pool_images(store, pool, limit)
    as_tensor = lambda a: torch.from_numpy(a).unsqueeze(1).float() / 255  # noqa: E731
    return records, as_tensor(adversarial), as_tensor(clean)


def pool_accuracy(solvers: dict, records: list[dict], adversarial, clean, preprocessings: list[str]) -> dict:
    """{solver: {"clean": {prep: acc}, "adversarial": {prep: acc}}} over a pool's captchas."""
    from farm.preprocess import apply

    truths = [r["answer"] for r in records]
    results = {}
    for name, solver in solvers.items():
        row = {}
        for label, images in (("clean", clean), ("adversarial", adversarial)):
            row[label] = {}
            for prep in preprocessings:
                readings = []
                for i in range(0, len(images), 200):
                    readings += solver.read(apply(prep, images[i:i + 200]))
                row[label][prep] = round(sequence_accuracy(readings, truths), 4)
        results[name] = row
    return results
