"""`robust`: perturbations that survive attackers' preprocessing (expectation over transformation).

Each step averages the gradient over random preprocessings an attacker may apply: median
filtering, Gaussian blur, JPEG, binarisation, rescaling and small shifts, with straight-through
gradients where an operation has none (Athalye et al. 2018). Steps use momentum, which keeps
the averaged direction steady.
"""

import torch

from farm.core import preprocess
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.settings import ROBUST

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

    Settings: ROBUST, momentum's with samples (4) and 20 steps. Early stopping is off: misreading
    the raw captcha says nothing about the preprocessed one. Shape: see Attack.
    """

    name = "robust"
    settings = ROBUST
    early_stop = False

    def _loss(self, x, labels, generator):
        total, first = 0.0, None
        for _ in range(self.samples):
            loss, log_probs = super()._loss(_random_preprocess(x, generator), labels, generator)
            total, first = total + loss / self.samples, first if first is not None else log_probs
        return total, first
