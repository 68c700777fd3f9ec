"""`generator`: a trained perturbation generator's forward pass (farm.core.generator), then K momentum steps.

One forward pass instead of an attack's gradient steps: the generator was trained once against the
substitute, its donors and copies, and the registry attaches it to the substitute version it was
trained against (`Solver.generator`). Optional refinement (`steps` K, default 0) starts from its
output, every step spent, each as long as one of the recommended's. Shape: see Attack; the glyph
masks (B, 1, H, W) are required (glyphs=): the generator reads them.
"""

import torch

from farm.core.attacks.momentum import Momentum
from farm.core.attacks.settings import GENERATOR, REFINE_STEP_OF
from farm.exceptions import SettingError

__all__ = ["Generated"]


class Generated(Momentum):
    """delta = G(grey image, glyph mask, code) within the budget and mask, then `steps` momentum steps from there.

    Each captcha's code is drawn from the batch's seeded generator, so a shard perturbs the same way every run
    and no two captchas share one.
    """

    name = "generator"
    settings = GENERATOR
    random_start = False
    early_stop = False  # refining steps are all spent, as the recommended's: they are there to transfer

    def default_alpha(self) -> float:
        return 2.5 * self.eps / REFINE_STEP_OF

    def __call__(self, images, labels, mask=None, targets=None, budget=None, glyphs=None, start=None):
        """As Attack's, with the glyph masks (B, 1, H, W) the generator reads (required); no target, no start."""
        if targets is not None:
            raise ValueError("targets: the generator makes captchas misread; it aims at no target text")
        if start is not None:
            raise ValueError("start: the generator makes its own start; give none")
        if self.solvers[0].generator is None:
            raise SettingError(f"method: substitute {self.solvers[0].version} has no trained generator; train one "
                               f"with `farm generator train`, or choose another --method")
        expected = (len(images), 1, *images.shape[-2:])  # one plane, whatever the images' channels
        if glyphs is None or tuple(glyphs.shape) != expected:
            raise ValueError(f"glyphs: the generator reads the glyph masks; give them shaped {expected}")
        mask = torch.ones_like(images[:, :1], dtype=torch.bool) if mask is None else mask.bool()
        return super().__call__(images, labels, torch.cat([mask, glyphs.bool()], 1), None, budget)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        model = self.solvers[0].generator.to(self.device).eval()
        x0 = images.to(self.device, torch.float32)
        allowed, glyphs = (mask[:, k:k + 1].to(self.device, torch.float32) for k in range(2))
        radius = torch.full_like(allowed, self.eps) if budget is None else budget.to(self.device, torch.float32)
        h, w = x0.shape[-2:]
        codes = torch.randn(len(x0), model.config.code_channels, -(-h // 4), -(-w // 4), generator=generator)
        with torch.no_grad():
            start = model.perturb(x0, glyphs, codes.to(self.device), radius, allowed)
        return super().attack_batch(images, labels, allowed.bool(), None, generator, budget, start=start)
