"""Streams of freshly rendered captchas for training and evaluation, reproducible from a seed.

Captcha i of a stream is a pure function of (seed, purpose, i), so a stream can restart at
any batch (resumed training) and runs split over worker processes still see the same data.
Purposes keep training, validation and evaluation captchas apart for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from farm.core.colour import DEFAULT_GREY
from farm.core.model import resize_input, to_grey, to_tensor
from farm.core.schemes import captcha_seed, get_scheme
from farm.exceptions import SettingError

__all__ = ["TRAIN", "VALIDATION", "EVALUATION", "Batch", "render_batch", "CaptchaStream", "batches", "render_set"]

# seed streams: a captcha used to train is never drawn for validation or evaluation
TRAIN, VALIDATION, EVALUATION = 1, 2, 3


@dataclass
class Batch:
    """Shape: images (B, 1, H, W) float in [0, 1] at the model's input size."""

    images: torch.Tensor
    texts: list[str]
    schemes: list[str]


def render_batch(names: list[str], seeds: list[int], size: tuple[int, int], grey: str = DEFAULT_GREY) -> Batch:
    """Render captchas (any mix of schemes) and bring them to the model's input: at its size, colour schemes
    converted to grey by the model's conversion (`grey`, its config's), as the model itself would."""
    captchas = [get_scheme(n).sample(s) for n, s in zip(names, seeds)]
    images = torch.empty(len(captchas), 1, *size)
    for name in set(names):  # resize scheme by scheme: each has its own native size
        idx = [i for i, n in enumerate(names) if n == name]
        images[idx] = resize_input(to_grey(to_tensor([captchas[i].image for i in idx]), grey), size)
    return Batch(images, [c.text for c in captchas], list(names))


class CaptchaStream(IterableDataset):
    """Batches of a weighted scheme mix, from batch `start` to `stop` (None: forever); `size` and `grey` the model's."""

    def __init__(self, mix: dict[str, float], batch_size: int, seed: int, size: tuple[int, int],
                 purpose: int = TRAIN, start: int = 0, stop: int | None = None, grey: str = DEFAULT_GREY):
        names = list(mix)
        weights = np.array([mix[n] for n in names], dtype=float)
        if not names or (weights <= 0).any():
            raise SettingError(f"mix: every scheme needs a positive weight, got {mix}")
        for name in names:
            get_scheme(name)
        self.names, self.weights = names, weights / weights.sum()
        self.batch_size, self.seed, self.size = batch_size, seed, size
        self.purpose, self.start, self.stop, self.grey = purpose, start, stop, grey

    def batch(self, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.purpose, index])
        names = [self.names[i] for i in rng.choice(len(self.names), self.batch_size, p=self.weights)]
        first = index * self.batch_size
        seeds = [captcha_seed(self.seed, first + i, self.purpose) for i in range(self.batch_size)]
        return render_batch(names, seeds, self.size, self.grey)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + worker
        while self.stop is None or index < self.stop:
            yield self.batch(index)
            index += workers


def batches(stream: CaptchaStream, workers: int):
    """Iterate a stream, rendering in `workers` processes (0: in this process). Order is preserved."""
    if workers <= 0:
        return iter(stream)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                        persistent_workers=False, collate_fn=lambda b: b)
    return iter(loader)


def render_set(mix: dict[str, float], count: int, seed: int, size: tuple[int, int], purpose: int = TRAIN,
               workers: int = 2, chunk: int = 250, progress: bool = False, grey: str = DEFAULT_GREY) -> Batch:
    """`count` captchas of a mix, rendered once in `workers` processes and kept as uint8 (N, 1, H, W).

    Rendering costs about as much CPU as a training step, so training makes several passes
    over a set rendered once instead of rendering every sample afresh.
    """

    stream = CaptchaStream(mix, chunk, seed, size, purpose, stop=-(-count // chunk), grey=grey)
    images, texts, schemes = [], [], []
    with tqdm(total=count, desc="render", unit="captcha", disable=not progress, leave=False) as bar:
        for batch in batches(stream, workers):
            images.append(batch.images.mul(255).round_().to(torch.uint8))
            texts += batch.texts
            schemes += batch.schemes
            bar.update(len(batch.texts))
    return Batch(torch.cat(images)[:count], texts[:count], schemes[:count])
