"""`direct`: advCAPTCHA's Eq. 1, one step of size eps along the masked, normalised gradient (FGSM/FGM)."""

from farm.core.attacks.base import Attack

__all__ = ["Direct"]


class Direct(Attack):
    """x' = clip(x + eps * M * normalize(grad)). Shape: see Attack. Goodfellow et al. 2015; Shi et al. 2020."""

    name = "direct"

    def __init__(self, solvers, eps: float = 8 / 255, norm: str = "linf", **kwargs):
        kwargs.update(steps=1, alpha=eps, random_start=False, early_stop=False)
        super().__init__(solvers, eps=eps, norm=norm, **kwargs)

    @classmethod
    def check(cls, eps: float = 8 / 255, norm: str = "linf", **settings) -> None:
        """Attack.check of what this method uses: its one step is eps long, whatever alpha and steps say."""
        super().check(eps=eps, norm=norm, **{**settings, "steps": 1, "alpha": eps})
