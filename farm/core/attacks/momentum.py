"""`momentum`: MI-FGSM (Dong et al. 2018): accumulate L1-normalised gradients, step along the sum."""

import torch

from farm.core.attacks.base import Attack, unit_l1

__all__ = ["Momentum", "MAX_DECAY"]

# Dong et al. sweep mu from 0 to 2 and find 1 best; above 2 past gradients swamp the new one, and
# the accumulated g grows like mu ** steps until it overflows.
MAX_DECAY = 2.0


class Momentum(Attack):
    """g_{k+1} = mu * g_k + grad / ||grad||_1; x_{k+1} = Proj(x_k + alpha * normalize(g_{k+1})).

    Arguments (Default): decay mu (1.0), the rest as Attack. Momentum steadies the direction
    across steps, which is what lets it transfer to models it never saw. Shape: see Attack.
    """

    name = "momentum"

    def __init__(self, solvers, decay: float = 1.0, **kwargs):
        self.check_decay(decay)
        super().__init__(solvers, **kwargs)
        self.decay = float(decay)

    @classmethod
    def check(cls, decay: float = 1.0, **settings) -> None:
        """Attack.check, and the decay."""
        cls.check_decay(decay)
        super().check(**settings)

    @staticmethod
    def check_decay(decay: float) -> None:
        if not 0 <= decay <= MAX_DECAY:
            raise ValueError(f"decay: the momentum decay must be in [0, {MAX_DECAY:g}] (got {decay}); "
                             f"0 is plain iterative steps, 1 the paper's")

    def direction(self, grad, state, rows):
        if "g" not in state:
            state["g"] = torch.zeros((int(rows.max()) + 1, *grad.shape[1:]), device=grad.device)
        g = self.decay * state["g"][rows] + unit_l1(grad)
        state["g"][rows] = g
        return self.normalize(g)
