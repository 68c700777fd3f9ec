"""`robust`: perturbations that survive attackers' preprocessing (expectation over transformation).

Each step averages the gradient over random preprocessings an attacker may apply: median
filtering, Gaussian blur, JPEG, binarisation, rescaling and small shifts, with straight-through
gradients where an operation has none (Athalye et al. 2018). Steps use momentum, which keeps
the averaged direction steady.
"""

import torch

from farm.core import preprocess
from farm.core.attacks.momentum import Momentum

__all__ = ["Robust"]


def _random_preprocess(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r = lambda: torch.rand(1, generator=generator).item()  # noqa: E731
    choice = int(torch.randint(0, 7, (1,), generator=generator))
    if choice == 0:
        return preprocess.median(x, 3)
    if choice == 1:
        return preprocess.blur(x, 0.6 + 0.9 * r())
    if choice == 2:
        return preprocess.jpeg(x, int(30 + 50 * r()))
    if choice == 3:
        return preprocess.binarize(x)
    if choice == 4:
        return preprocess.rescale(x, 0.4 + 0.4 * r())
    if choice == 5:
        return preprocess.shift(x, int(torch.randint(-2, 3, (1,), generator=generator)),
                                int(torch.randint(-2, 3, (1,), generator=generator)))
    return x  # the captcha as served must fool solvers too


class Robust(Momentum):
    """Momentum steps on gradients averaged over `samples` random preprocessings per step.

    Arguments (Default): samples (4), steps (20), the rest as Momentum. Early stopping is off:
    misreading the raw captcha says nothing about the preprocessed one. Shape: see Attack.
    """

    name = "robust"

    def __init__(self, solvers, samples: int = 4, steps: int = 20, **kwargs):
        self.check_samples(samples)
        kwargs.setdefault("early_stop", False)
        super().__init__(solvers, steps=steps, **kwargs)
        self.samples = int(samples)

    @classmethod
    def check(cls, samples: int = 4, steps: int = 20, **settings) -> None:
        """Momentum.check (with this method's default steps), and the samples."""
        cls.check_samples(samples)
        super().check(steps=steps, **settings)

    @staticmethod
    def check_samples(samples: int) -> None:
        if not samples >= 1:
            raise ValueError(f"samples: preprocessings averaged per step, must be at least 1 (got {samples})")

    def _loss(self, x, labels, generator):
        total, first = 0.0, None
        for _ in range(self.samples):
            loss, log_probs = super()._loss(_random_preprocess(x, generator), labels, generator)
            total, first = total + loss / self.samples, first if first is not None else log_probs
        return total, first
