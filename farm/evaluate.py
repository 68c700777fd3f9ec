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
            truths += batch.texts[:keep]
            bar.update(keep)
        bar.close()
        results[name] = {"count": len(truths), "accuracy": sequence_accuracy(readings, truths)}
    return results
