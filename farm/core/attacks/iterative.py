"""`iterative`: advCAPTCHA's Eq. 2, steps of size alpha projected back into the eps-ball (BIM/PGD)."""

from farm.core.attacks.base import Attack
from farm.core.attacks.settings import ITERATIVE

__all__ = ["Iterative"]


class Iterative(Attack):
    """x_{k+1} = Proj_eps(x_k + alpha * M * normalize(grad)); optional random start; early stop.

    Kurakin et al. 2017, Madry et al. 2018, Shi et al. 2020. Settings: ITERATIVE. Shape: see Attack.
    """

    name = "iterative"
    settings = ITERATIVE
