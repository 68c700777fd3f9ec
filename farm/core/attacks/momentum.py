"""`momentum`: MI-FGSM (Dong et al. 2018): accumulate L1-normalised gradients, step along the sum."""

import torch

from farm.core.attacks.base import Attack, unit_l1
from farm.core.attacks.settings import MOMENTUM

__all__ = ["Momentum"]


class Momentum(Attack):
    """g_{k+1} = mu * g_k + grad / ||grad||_1; x_{k+1} = Proj(x_k + alpha * normalize(g_{k+1})).

    Settings: MOMENTUM, the iterative method's and the decay mu. Momentum steadies the direction
    across steps, which is what lets it transfer to models it never saw. Shape: see Attack.
    """

    name = "momentum"
    settings = MOMENTUM

    def direction(self, grad, state, rows):
        if "g" not in state:
            state["g"] = torch.zeros((int(rows.max()) + 1, *grad.shape[1:]), device=grad.device)
        g = self.decay * state["g"][rows] + unit_l1(grad)
        state["g"][rows] = g
        return self.normalize(g)
