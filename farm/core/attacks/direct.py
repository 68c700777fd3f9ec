"""`direct`: advCAPTCHA's Eq. 1, one step of size eps along the masked, normalised gradient (FGSM/FGM)."""

from farm.core.attacks.base import Attack
from farm.core.attacks.settings import DIRECT

__all__ = ["Direct"]


class Direct(Attack):
    """x' = clip(x + eps * M * normalize(grad)). Shape: see Attack. Goodfellow et al. 2015; Shi et al. 2020.

    Settings: DIRECT (eps, norm, smoothing, diversity); its one step is eps long, from the clean captcha.
    """

    name = "direct"
    settings = DIRECT
    steps, random_start, early_stop = 1, False, False

    def default_alpha(self) -> float:
        return self.eps
