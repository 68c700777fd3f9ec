"""`generator`: a trained perturbation generator's forward pass (farm.core.generator), then K momentum steps.

One forward pass instead of an attack's gradient steps: the generator was trained once against the
substitute, its donors and copies, and the registry attaches it to the substitute version it was
trained against (`Solver.generator`). A generator with a dot placer first puts `dots` dots in the
glyphs' tone on their edges where it scores them best, greedily as edge does (edge's own placement,
without a gradient); its noise then goes on top. Optional refinement (`steps` K, default 0) starts
from its output, every step spent, each as long as one of the recommended's. Shape: see Attack; the
glyph masks (B, 1, H, W) are required (glyphs=): the generator reads them.
"""

import torch
import torch.nn.functional as F

from farm.core.attacks.edge import Edge, edge_zones, glyph_tone
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.settings import GENERATOR, REFINE_STEP_OF
from farm.core.model import to_planes
from farm.exceptions import SettingError

__all__ = ["Generated", "dot_placement", "with_dots"]


class Generated(Momentum):
    """Dots where the placer scores them best, then delta = G(captcha, glyph mask, code) within the budget and mask,
    then `steps` momentum steps from there.

    Each captcha's code is drawn from the batch's seeded generator (a shard's seed is keyed by the secret:
    Seeds.attack), so a shard perturbs the same way every run, no two captchas share one, and no one without the
    secret can draw them for the public bundled generator.
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
        model = self.solvers[0].generator
        dots = model.config.dots if self.dots is None else self.dots
        if dots and not model.config.dots:
            raise SettingError(f"dots: the generator of substitute {self.solvers[0].version} has no dot placer; train "
                               f"one that places dots (`farm generator train --dots N`), or give --dots 0")
        mask = torch.ones_like(images[:, :1], dtype=torch.bool) if mask is None else mask.bool()
        planes = [mask, glyphs.bool()]
        # edge's greedy placement, made once for the call; where dots may go is worked out only when some will
        self.placement = dot_placement(self.solvers, model, dots, str(self.device)) if dots else None
        if self.placement is not None:
            planes += [to_planes(zone) for zone in edge_zones(glyphs[:, 0].cpu().numpy(), model.config.band,
                                                              model.config.dot_width)]
        return super().__call__(images, labels, torch.cat(planes, 1), None, budget)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        model = self.solvers[0].generator.to(self.device).eval()
        x0 = images.to(self.device, torch.float32)
        planes = [mask[:, k:k + 1].to(self.device, torch.float32) for k in range(mask.shape[1])]
        allowed, glyphs = planes[:2]
        radius = torch.full_like(allowed, self.eps) if budget is None else budget.to(self.device, torch.float32)
        h, w = x0.shape[-2:]
        codes = torch.randn(len(x0), model.config.code_channels, -(-h // 4), -(-w // 4), generator=generator)
        with torch.no_grad():
            if self.placement is not None:
                centres, reach = planes[2:]
                x0 = with_dots(self.placement, model, x0, labels, glyphs, centres, reach * allowed, generator)
            start = model.perturb(x0, glyphs, codes.to(self.device), radius, allowed)
        if not self.steps:  # within the budget, the mask and [0, 1] already: nothing to refine
            return start
        return super().attack_batch(x0, labels, allowed.bool(), None, generator, budget, start=start)


def dot_placement(solvers, model, dots: int, device: str = "cpu") -> Edge:
    """Edge's greedy placement of `dots` of the generator's dots (its placer's dot width and band), in one round:
    how the method places them, in use and when its noise is trained."""
    return Edge(solvers, dots=dots, dot_width=model.config.dot_width, band=model.config.band, dot_rounds=1,
                device=device)


def with_dots(placement: Edge, model, x0, labels, glyphs, centres, where, generator) -> torch.Tensor:
    """x0 with `placement`'s dots where the generator's placer scores them best (edge's greedy placement, no
    gradient), in the glyphs' tone: what the generator's noise goes on, in use and in training.

    centres, where: edge_zones' centres, and its reach within the mask, as (B, 1, H, W) floats.
    """
    kernel = placement.kernel

    def scorer(x):  # a dot's worth centred at each pixel: the placer's probability of its ink around it
        chances = torch.sigmoid(model.dot_logits(x, glyphs, centres))
        return F.conv2d(chances, kernel, padding=kernel.shape[-1] // 2)

    tone = glyph_tone(x0)
    ink = placement.place(x0, labels, None, centres, where, generator, scorer=scorer, tone=tone)
    return x0 * (1 - ink) + tone * ink
