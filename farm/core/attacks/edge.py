"""`edge`: dots of ink on the glyphs' edges where the loss rises most, then momentum's dense noise.

Dense L-inf noise stays within eps of the background, so one threshold wipes it out (issue 25).
A dot in the glyphs' darkest tone lies on the far side of any threshold, and one that touches a
stroke joins it: after binarisation it bridges, thickens or closes a letter, and an opening
(3x3) cannot part them. The dots are placed by the gradient, greedily: a disc of ink at centre c
changes the captcha by disc(p - c) (tone - x)(p), so its first-order gain is the correlation of
grad * (tone - x) with the disc, read at every centre of the band at once from one gradient.
Each gradient is of the loss summed over the solvers (the ensemble, balanced as Attack._loss
does) after one clean-up chain of the attacker's toolbox (farm.core.preprocess, sampled:
expectation over transformation, straight-through thresholds; on colour, some through the conversions
bots read colour with). The best centres are taken in turn, none within a dot's width of one taken.
Then momentum's noise (farm.core.attacks.momentum) runs on the inked captcha through the first solver
alone (the substitute), as the default does: the noise ends reading as served, the dots the reading
after a clean-up.

Where: a dot's centre lies off the glyphs and at most `band` pixels from them; its ink is cut to
the glyphs dilated by band + dot_width / 2 (edge_zones), and to the mask. dot_placement=random is
the control: the same number of dots, picked the same way from random scores.

Shape: see Attack; the glyph masks (B, 1, H, W) are required (glyphs=).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from farm.core.attacks.base import Attack
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.settings import EDGE, MOMENTUM
from farm.core.measures import glyph_region
from farm.core.model import to_planes
from farm.core.preprocess import parse_chain

__all__ = ["Edge", "PLACEMENT_CHAINS", "COLOUR_PLACEMENT_CHAINS", "disc_kernel", "edge_zones"]

# The clean-ups a placement gradient reads the captcha through, one sampled per gradient: the image as
# served, the thresholds, and the chains that denoise or tidy around a threshold (the worst of benchmarks/cleanup.py).
PLACEMENT_CHAINS = ("none", "otsu", "median3>otsu", "otsu>close3", "blur1>otsu", "adaptive15", "thr160")
# On colour, where bots gave the first colour default back most: 2-bit reduction, alone and after the conversions bots
# read colour through (HSV value first), beside the thresholds (the donors chose them: docs/platforms.md, Colour).
COLOUR_PLACEMENT_CHAINS = ("none", "otsu", "otsu>close3", "thr200", "bits2", "value>bits2", "channel>bits2",
                           "saturation>bits2")
SOFTNESS = 0.5  # pixels over which a dot's edge fades (anti-aliased, like the scheme's own strokes)
DOT_MASS = 2.0  # a dot's ink before saturation: 1 - exp(-2 * 2 * disc) is solid inside the disc
TONE_QUANTILE = 0.02  # the ink's grey: this quantile of the clean captcha, its darkest glyph pixels


def disc_kernel(diameter: float, softness: float = SOFTNESS) -> torch.Tensor:
    """A disc of `diameter` pixels whose edge fades over `softness` pixels. (1, 1, k, k)."""
    radius = diameter / 2
    half = math.ceil(radius + 2 * softness)
    u = torch.arange(-half, half + 1, dtype=torch.float32)
    distance = (u.view(-1, 1) ** 2 + u.view(1, -1) ** 2).sqrt()
    return torch.sigmoid((radius - distance) / softness).view(1, 1, 2 * half + 1, 2 * half + 1)


def edge_zones(glyphs: np.ndarray, band: int, dot_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(centres, reach), each (N, H, W) bool: where a dot's centre may lie (off the glyphs, within `band` px
    of them) and where its ink may (the glyphs dilated by band + dot_width / 2, as masks.glyph_region dilates)."""
    glyphs = glyphs.astype(bool)
    centres = glyph_region(glyphs, band) & ~glyphs
    reach = glyph_region(glyphs, band + math.ceil(dot_width / 2))
    return centres, reach


def glyph_tone(x: torch.Tensor) -> torch.Tensor:
    """The glyphs' own tone per captcha and channel (B, C, 1, 1): a dark quantile, so dots on colour captchas
    wear the glyphs' colour. torch.quantile's linear interpolation between two order statistics (equal to it
    within 1e-8). A clean captcha's pixels lie on the 8-bit grid, where counting its 256 levels finds them at a
    tenth of kthvalue's time; anything else takes kthvalue."""
    flat = x.flatten(2)
    position = TONE_QUANTILE * (flat.shape[-1] - 1)
    below = int(position)
    above = min(below + 1, flat.shape[-1] - 1)
    levels = flat.mul(255).round()
    if torch.equal(levels.div(255), flat):
        counts = torch.zeros(*flat.shape[:2], 256, device=x.device)
        reached = counts.scatter_add_(2, levels.long(), torch.ones_like(flat)).cumsum(2)  # pixels at or below each
        low, high = ((reached <= k).sum(2).div(255).to(flat.dtype) for k in (below, above))  # the k-th from 0
    else:
        low, high = (flat.kthvalue(k + 1, dim=2).values for k in (below, above))
    return torch.lerp(low, high, position - below)[..., None, None]


class Edge(Attack):
    """Greedy edge dots through the solvers and the clean-up chains, then momentum noise through the substitute.

    Settings: EDGE, momentum's (every step spent by default) with dots (12), dot_width (3.5 px),
    band (2 px), dot_rounds (2), dot_samples (2) and dot_placement (gradient; random: the control).
    The placement costs dot_rounds * dot_samples gradients of the whole ensemble; the noise `steps`
    gradients of the substitute. The rest (solvers, batch_size, seed) as Attack.
    """

    name = "edge"
    settings = EDGE

    def __init__(self, solvers, **kwargs):
        super().__init__(solvers, **kwargs)
        noise = {name: getattr(self, name) for name in MOMENTUM.names}
        noise["alpha"] = kwargs.get("alpha")  # None: momentum's own 2.5 eps / steps, which may pass eps
        self.chains = {channels: [parse_chain(name) for name in names]  # by the images' channels: grey or colour
                       for channels, names in ((1, PLACEMENT_CHAINS), (3, COLOUR_PLACEMENT_CHAINS))}
        self.kernel = disc_kernel(self.dot_width).to(self.device)
        # the noise is aimed at the substitute and its hardened copies (farm.ops.anticipation): the donors place dots
        substitute = self.solvers[0]
        self.noise = Momentum([substitute, *substitute.companions], **noise,
                              stop_loss=self.stop_loss, loss=self.loss, batch_size=self.batch_size, seed=self.seed,
                              device=str(self.device))
        self.ink: list[torch.Tensor] = []  # per batch, the dots' ink (B, 1, H, W) in [0, 1]: what measures read

    def __call__(self, images, labels, mask=None, targets=None, budget=None, glyphs=None, start=None):
        """As Attack's, with the glyph masks (B, 1, H, W) the dots are placed by (required); no start."""
        if start is not None:
            raise ValueError(f"start: {self.name} places its dots on the clean captcha; it refines no given start")
        if glyphs is None:
            raise ValueError(f"glyphs: {self.name} places its dots on the glyphs' edges; give the glyph masks "
                             f"(B, 1, H, W)")
        expected = (len(images), 1, *images.shape[-2:])  # one plane, whatever the images' channels
        if tuple(glyphs.shape) != expected:
            raise ValueError(f"glyphs: shape {tuple(glyphs.shape)}; for images {tuple(images.shape)}, {expected}")
        mask = torch.ones_like(images[:, :1], dtype=torch.bool) if mask is None else mask.bool()
        self.ink = []
        return super().__call__(images, labels, self.planes(mask, glyphs), targets, budget)

    def planes(self, mask: torch.Tensor, glyphs: torch.Tensor) -> torch.Tensor:
        """What each batch's attack_batch is given as its mask: the mask, then where a dot's centre and its ink may
        lie (edge_zones), (B, 3, H, W) bool."""
        centres, reach = edge_zones(glyphs[:, 0].cpu().numpy(), self.band, self.dot_width)
        return torch.cat([mask, to_planes(centres), to_planes(reach)], 1)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        x0 = images.to(self.device, torch.float32)
        allowed, centres, reach = (mask[:, k:k + 1].to(self.device, torch.float32) for k in range(3))
        ink = self.place(x0, labels, targets, centres, reach * allowed, generator)
        self.ink.append(ink.cpu())
        inked = x0 * (1 - ink) + glyph_tone(x0) * ink
        return self.noise.attack_batch(inked, labels, allowed, targets, generator, budget)

    def place(self, x0, labels, targets, centres, where, generator, scorer=None, tone=None) -> torch.Tensor:
        """The dots' ink (B, 1, H, W): dot_rounds rounds, each placing its share of the dots best first.

        scorer(x) -> (B, 1, H, W): a dot's worth centred at each pixel, instead of the gradient's gain (a trained
        generator's dot placer, farm.core.generator). tone: glyph_tone(x0), when the caller has it.
        """
        for solver in self.solvers:
            solver.model.eval()
        targeted = targets is not None
        gradient = scorer is None and self.dot_placement != "random"
        goal = [self.charset.encode(self.charset.normalize(t)) for t in (targets if targeted else labels)] \
            if gradient else None  # what the gradient's loss reads
        tone = glyph_tone(x0) if tone is None else tone
        density = torch.zeros_like(x0[:, :1])  # dot centres, DOT_MASS each
        ink = torch.zeros_like(x0[:, :1])
        free = centres > 0  # centres still open: in the band, not near a dot taken
        b, (h, w) = len(x0), x0.shape[-2:]
        cols = torch.arange(w, device=self.device).view(1, 1, w)
        rows = torch.arange(h, device=self.device).view(1, h, 1)
        for r in range(self.dot_rounds):
            x = x0 * (1 - ink) + tone * ink
            if self.dot_placement == "random":
                score = torch.rand(ink.shape, generator=generator).to(self.device)
            elif scorer is not None:
                score = scorer(x)
            else:
                score = self.gain(x, tone, goal, targeted, generator)
            score = score[:, 0].masked_fill(~free[:, 0], float("-inf"))  # (B, H, W)
            for _ in range(self.dots * (r + 1) // self.dot_rounds - self.dots * r // self.dot_rounds):
                best = score.flatten(1).argmax(1)  # (B,)
                open_ = torch.isfinite(score.flatten(1).max(1).values)  # a captcha whose band is full takes no more
                y, x_ = best // w, best % w
                density.view(b, -1)[torch.arange(b, device=self.device)[open_], best[open_]] = DOT_MASS
                near = ((cols - x_.view(b, 1, 1)) ** 2 + (rows - y.view(b, 1, 1)) ** 2) < self.dot_width ** 2
                score = score.masked_fill(near, float("-inf"))
                free = free & ~near.unsqueeze(1)
            ink = self.ink_of(density, where)
        return self.keep_glyphs(density, where, ink)

    def ink_of(self, density: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """The dots' ink (B, 1, H, W) centred on `density`: discs that saturate where they overlap, cut to `where`."""
        chord = F.conv2d(density, self.kernel, padding=self.kernel.shape[-1] // 2)
        return (1 - torch.exp(-2 * chord)) * where

    def keep_glyphs(self, density: torch.Tensor, where: torch.Tensor, ink: torch.Tensor) -> torch.Tensor:
        """The dots' ink as placed: on glyphs where the scheme drew them no dot turned one into another character
        (benchmarks/warp_identity.py); warped_edge's dots, on glyphs a field moved nearer a rival, can."""
        return ink

    def gain(self, x, tone, goal, targeted: bool, generator) -> torch.Tensor:
        """First-order gain of a dot centred at each pixel, (B, 1, H, W), averaged over dot_samples chains."""
        grad = torch.zeros_like(x)
        x = x.detach().requires_grad_(True)
        chains = self.chains[x.shape[1]]
        for _ in range(self.dot_samples):
            chain = chains[int(torch.randint(len(chains), (1,), generator=generator))]
            loss, _ = self._loss(chain(x), goal, generator)
            grad += torch.autograd.grad((-loss if targeted else loss).sum(), x)[0]
        with torch.no_grad():
            return F.conv2d((grad * (tone - x)).sum(1, keepdim=True), self.kernel, padding=self.kernel.shape[-1] // 2)
