"""Issue 25 prototypes, `ink` and `texture`: unproven, so kept beside their benchmark, not in farm.core.

benchmarks/ink_research.py measures them; its docstring records what they reached (not the
issue's goal). Each declares its settings as the library's methods do (farm.core.attacks.settings),
and make_attack does not know them: they are built by class.

`ink`: adversarial strokes in the glyphs' own tone, placed by the gradient.

Dense L-inf noise lives within 32/255 of the background, so a threshold wipes it out. Ink
lies on the far side of any threshold: a few quadratic Bezier strokes, each `width` pixels
wide (>= 3: a 3x3 closing or median cannot remove them), drawn in the glyphs' darkest tone.
They are soft-rasterised, so their control points take gradients: points along each stroke
are splatted bilinearly and swept with a soft disc of the stroke's width (ink_coverage). The points
move (Adam, in pixels) to raise the substitutes' loss averaged over the attacker's clean-up
chains (farm.core.preprocess, one sampled per step: expectation over transformation, straight-
through thresholds), while a penalty keeps ink off the glyph region the mask forbids.

`optimise=False` is the control: the same strokes from the same random start, moved by the
glyph penalty alone, so any gain of the optimised ones comes from where the ink is.

Edge and erasing ink are Ink with another mask, start region and tone (ink_research's kinds
`edge` and `erase`): edge ink may go on the glyphs and a band of 1-3 px around them and starts
in that band, so after a threshold it joins the glyph (bridges, serifs, filled gaps) and no
threshold or 3x3 opening can part them; erasing ink (tone `background`: each pixel's local
background) may go on the glyphs only and starts on them, cutting gaps into the strokes.
`search=greedy` places dots instead where a disc of ink raises the loss most to first order, a
few per round over the whole start region: Adam only slides a random dot a few pixels.

Shape: images (B, 1, H, W) float in [0, 1]; mask (B, 1, H, W): 1 where ink may go, or (B, 2, H, W)
whose second channel is where random starts are drawn (anywhere when absent).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from farm.core.attacks.base import Attack
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.settings import ITERATIVE, MOMENTUM, Declaration, Setting
from farm.core.preprocess import Chain, blur, parse_chain
from farm.exceptions import SettingError

__all__ = ["EOT_CHAINS", "INK", "SEARCHES", "TEXTURE", "TONES", "Ink", "Texture", "bezier", "disc_kernel", "eot_chains",
           "ink_coverage", "splat"]

# The clean-ups averaged over while placing ink: the image as served, the thresholds, and the
# chains that denoise or tidy around a threshold (the worst ones of benchmarks/cleanup.py).
# A setting's value is one string, chains joined by "|".
EOT_CHAINS = "none|otsu|median3>otsu|otsu>close3|blur1>otsu|adaptive15|thr160"
SAMPLES = 64  # points a stroke is sampled at: under 1 px apart for strokes up to ~60 px long
DOT_MASS = 2.0  # a dot splats as much ink as 2 px of stroke: solid inside its disc


def bezier(points: torch.Tensor, samples: int = SAMPLES) -> torch.Tensor:
    """Points along quadratic Bezier curves. (..., 3, 2) control points -> (..., samples, 2)."""
    t = torch.linspace(0, 1, samples, device=points.device).view(-1, 1)
    p0, p1, p2 = points[..., 0:1, :], points[..., 1:2, :], points[..., 2:3, :]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def splat(positions: torch.Tensor, weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear splatting of weighted points onto the pixel grid (differentiable in positions and weights).

    positions (B, N, 2) as (x, y) in pixels, pixel centres at +0.5; weights (B, N) -> (B, 1, H, W).
    """
    b = positions.shape[0]
    x, y = positions[..., 0] - 0.5, positions[..., 1] - 0.5
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = x - x0, y - y0
    canvas = torch.zeros(b, (height + 2) * (width + 2), device=positions.device, dtype=positions.dtype)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        col = (x0 + dx + 1).clamp(0, width + 1).long()  # one pixel of margin each side catches the clamped ones
        row = (y0 + dy + 1).clamp(0, height + 1).long()
        canvas = canvas.scatter_add(1, row * (width + 2) + col, w * weights)
    return canvas.view(b, 1, height + 2, width + 2)[..., 1:-1, 1:-1]


def disc_kernel(diameter: float, softness: float) -> torch.Tensor:
    """A disc of `diameter` pixels with edges fading over `softness` pixels. (1, 1, k, k)."""
    radius = diameter / 2
    half = math.ceil(radius + 2 * softness)
    u = torch.arange(-half, half + 1, dtype=torch.float32)
    distance = (u.view(-1, 1) ** 2 + u.view(1, -1) ** 2).sqrt()
    return torch.sigmoid((radius - distance) / softness).view(1, 1, 2 * half + 1, 2 * half + 1)


def ink_coverage(points: torch.Tensor, height: int, width: int, stroke_width: float, softness: float,
                 dots: torch.Tensor | None = None) -> torch.Tensor:
    """Ink of each pixel in [0, 1]. (B, K, 3, 2) stroke control points, (B, D, 2) dot centres -> (B, 1, H, W).

    Each stroke is sampled densely, every sample weighted by the arc length it stands for and
    splatted; a disc of the stroke's width swept along it gives each pixel its chord through
    the stroke (about `stroke_width` on the centre line, 0 at the edge), and 1 - exp(-2 chord)
    saturates to solid ink inside and fades at the edge. A dot is one splat of mass DOT_MASS: a
    disc of the same width. Overlaps simply add: a soft union.
    """
    b = points.shape[0] if points is not None else dots.shape[0]
    positions, weights = [], []
    if points is not None and points.shape[1]:
        curve = bezier(points)  # (B, K, S, 2)
        step = (curve[..., 1:, :] - curve[..., :-1, :]).norm(dim=-1)  # (B, K, S - 1)
        mass = torch.cat([step[..., :1], step[..., 1:] + step[..., :-1], step[..., -1:]], -1) / 2
        positions.append(curve.reshape(b, -1, 2))
        weights.append(mass.reshape(b, -1))
    if dots is not None and dots.shape[1]:
        positions.append(dots)
        weights.append(torch.full(dots.shape[:2], DOT_MASS, device=dots.device, dtype=dots.dtype))
    density = splat(torch.cat(positions, 1), torch.cat(weights, 1), height, width)
    kernel = disc_kernel(stroke_width, softness).to(density.device, density.dtype)
    chord = F.conv2d(density, kernel, padding=kernel.shape[-1] // 2)
    return 1 - torch.exp(-2 * chord)


def eot_chains(text: str) -> list[Chain]:
    """The chains of a `chains` setting, `a|b>c|...`; SettingError names a step it does not know."""
    names = [name for name in text.split("|") if name.strip()]
    if not names:
        raise SettingError(f"chains: give clean-up chains joined by '|', e.g. none|otsu|median3>otsu (got {text!r})")
    return [parse_chain(name) for name in names]


# -- the settings, declared as farm.core.attacks.settings declares the library's -------------------

def _at_least(low: float, what: str):
    def check(value, settings) -> None:
        if not value >= low:
            raise SettingError(f"{what}: must be at least {low:g} (got {value})")
    return check


def _dots(dots, settings) -> None:
    _at_least(0, "dots")(dots, settings)
    if settings["strokes"] + dots < 1:
        raise SettingError(f"strokes, dots: need at least one stroke or dot (got {settings['strokes']} + {dots})")


def _chains(chains, settings) -> None:
    eot_chains(chains)


def _tone(tone, settings) -> None:
    if tone not in TONES:
        raise SettingError(f"tone: one of {', '.join(TONES)} (got {tone!r})")


def _search(search, settings) -> None:
    if search not in SEARCHES:
        raise SettingError(f"search: one of {', '.join(SEARCHES)} (got {search!r})")
    if search == "greedy" and settings["strokes"]:
        raise SettingError(f"search: greedy places dots only; set strokes=0 (got {settings['strokes']})")


def _quantile(q, settings) -> None:
    if not 0 <= q <= 1:
        raise SettingError(f"tone_quantile: a quantile, must be in [0, 1] (got {q})")


TONES = ("dark", "background")
SEARCHES = ("adam", "greedy")
BACKGROUND_SIGMA = 3.0  # px: wider than a stroke (4-5 px on classic), so every glyph pixel has background within reach

CHAINS_SETTING = Setting("chains", EOT_CHAINS, str, "Clean-up chains joined by '|', one sampled per gradient "
                                                    "(expectation over transformation).", _chains)
OPTIMISE_SETTING = Setting("optimise", True, bool, "Place by gradient; off: the random-placement control.")

INK = Declaration((
    Setting("strokes", 6, int, "Strokes per captcha.", _at_least(0, "strokes")),
    Setting("dots", 0, int, "Dots per captcha, discs as wide as a stroke (the scheme's own noise is dots).", _dots),
    Setting("width", 3.5, float, "Stroke and dot width in pixels (>= 3: a 3x3 closing or median keeps them).",
            _at_least(1, "width")),
    Setting("length", 24.0, float, "Span of a stroke at its random start, pixels."),
    Setting("steps", 20, int, "Adam steps (0: ink stays at its random start).", _at_least(0, "steps")),
    Setting("alpha", 1.0, float, "Adam's step size in pixels."),
    Setting("softness", 0.5, float, "Pixels over which a stroke's edge fades (anti-aliasing, the gradient's reach)."),
    Setting("glyph_penalty", 4.0, float, "Weight of ink on forbidden pixels against the loss."),
    CHAINS_SETTING,
    Setting("samples", 1, int, "Chains sampled per step.", _at_least(1, "samples")),
    OPTIMISE_SETTING,
    Setting("tone_quantile", 0.02, float, "The ink's grey: this quantile of the clean captcha (its darkest glyph "
                                          "pixels).", _quantile),
    Setting("tone", "dark", str, "dark: the tone_quantile grey; background: each pixel's local background "
                                 "(a Gaussian mean of the pixels the mask forbids): erasing ink.", _tone),
    Setting("search", "adam", str, "adam: move random dots and strokes by gradient; greedy: put each dot where "
                                   "the gradient says a disc of ink raises the loss most, in `rounds` rounds "
                                   "(dots only, inside the start region).", _search),
    Setting("rounds", 4, int, "Greedy rounds; the steps are shared among them (chain samples per round).",
            _at_least(1, "rounds")),
    ITERATIVE["diversity"],
))
# momentum's settings, every step spent by default, and the chains each step reads the captcha through
TEXTURE = MOMENTUM.derive(defaults={"early_stop": False}, add=(CHAINS_SETTING, OPTIMISE_SETTING))


class Ink(Attack):
    """Strokes placed by gradient through the substitutes and the clean-up chains.

    Settings: INK (strokes 6, dots 0, width 3.5, length 24, steps 20, alpha 1.0 px, softness 0.5,
    glyph_penalty 4.0, chains EOT_CHAINS, samples 1, optimise True, tone_quantile 0.02, tone dark,
    search adam, rounds 4, diversity 0).
    optimise False is the random-placement control. The rest (solvers, batch_size, seed) as Attack.
    Ink has no budget: the loop's eps, norm, smoothing and start are not used.
    """

    name = "ink"
    settings = INK
    norm, smoothing, random_start, early_stop = "linf", 0.0, False, False

    def __init__(self, solvers, **kwargs):
        super().__init__(solvers, **kwargs)
        self.eot = eot_chains(self.chains)
        self.coverage: list[torch.Tensor] = []  # per batch, the final ink (B, 1, H, W): glyph-area measures

    def __call__(self, images, labels, mask=None, targets=None, budget=None):
        if budget is not None:
            raise ValueError("budget: ink takes none; where it may go is the mask, its tone tone_quantile")
        self.coverage = []
        return super().__call__(images, labels, mask, targets, budget)

    def initial_points(self, x0: torch.Tensor, generator: torch.Generator,
                       region: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random strokes (a start anywhere or in `region`, the two other points within `length` of it:
        (B, K, 3, 2)) and random dots ((B, D, 2)), anywhere or in `region` (B, 1, H, W)."""
        b, h, w = len(x0), x0.shape[-2], x0.shape[-1]
        size = torch.tensor([w, h], dtype=torch.float32)

        def positions(count: int) -> torch.Tensor:  # (B, count, 2)
            if region is None or count == 0:
                return torch.rand(b, count, 2, generator=generator) * size
            weights = region.flatten(1).cpu().float()
            weights = weights + (weights.sum(1, keepdim=True) == 0).float()  # an empty region: anywhere
            index = torch.multinomial(weights, count, replacement=True, generator=generator)
            pixel = torch.stack([index % w, index // w], -1).float()
            return pixel + torch.rand(b, count, 2, generator=generator)  # anywhere inside the pixel

        start = positions(self.strokes).unsqueeze(2)
        offsets = (torch.rand(b, self.strokes, 2, 2, generator=generator) * 2 - 1) * self.length
        dots = positions(self.dots)
        return torch.cat([start, start + offsets], 2).to(self.device), dots.to(self.device)

    def ink_tone(self, x0: torch.Tensor, forbidden: torch.Tensor) -> torch.Tensor:
        """The ink's grey: (B, 1, 1, 1) for `dark`, (B, 1, H, W) for `background`."""
        if self.tone == "dark":
            return x0.flatten(1).quantile(self.tone_quantile, dim=1).view(-1, 1, 1, 1)
        # normalised convolution: the background's mean near each pixel, glyph pixels left out
        weight = blur(forbidden, BACKGROUND_SIGMA)
        local = blur(x0 * forbidden, BACKGROUND_SIGMA) / weight.clamp_min(1e-6)
        fallback = x0.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
        return torch.where(weight > 1e-3, local, fallback)

    def render(self, x0: torch.Tensor, points: torch.Tensor, dots: torch.Tensor,
               tone: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ink = ink_coverage(points, x0.shape[-2], x0.shape[-1], self.width, self.softness, dots)
        return x0 * (1 - ink) + tone * ink, ink

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        for solver in self.solvers:
            solver.model.eval()
        x0 = images.to(self.device, torch.float32)
        mask = mask.to(self.device, torch.float32)
        forbidden = 1 - mask[:, :1]
        tone = self.ink_tone(x0, forbidden)
        goal = [self.charset.encode(self.charset.normalize(t)) for t in (targets or labels)]
        h, w = x0.shape[-2:]
        limit = torch.tensor([w, h], device=self.device, dtype=torch.float32)
        region = mask[:, 1:2] if mask.shape[1] > 1 else None
        if self.optimise and self.search == "greedy":
            x, ink = self.greedy(x0, tone, mask[:, :1] if region is None else region, goal, targets is not None,
                                 generator)
            self.coverage.append(ink.cpu())
            return x.clamp(0, 1)
        points, dots = self.initial_points(x0, generator, region)
        points.requires_grad_(True)
        dots.requires_grad_(True)
        optimiser = torch.optim.Adam([points, dots], lr=self.alpha)
        for _ in range(self.steps):
            x, ink = self.render(x0, points, dots, tone)
            penalty = (ink * forbidden).flatten(1).sum(1) / self.width ** 2  # ~ dots of ink on glyphs
            objective = self.glyph_penalty * penalty
            if self.optimise:
                for _ in range(self.samples):
                    chain = self.eot[int(torch.randint(len(self.eot), (1,), generator=generator))]
                    loss, _ = self._loss(chain(self.transform(x, generator)), goal, generator)
                    objective = objective + (loss if targets is not None else -loss) / self.samples
            optimiser.zero_grad()
            objective.sum().backward()
            optimiser.step()
            with torch.no_grad():  # ink stays on the canvas
                points.copy_(torch.maximum(torch.minimum(points, limit), torch.zeros_like(limit)))
                dots.copy_(torch.maximum(torch.minimum(dots, limit), torch.zeros_like(limit)))
        with torch.no_grad():
            x, ink = self.render(x0, points, dots, tone)
        self.coverage.append(ink.cpu())
        return x.clamp(0, 1)


    def greedy(self, x0, tone, region, goal, targeted: bool, generator):
        """Dots put, a few per round, where a disc of ink raises the loss most to first order.

        A disc at c changes the captcha by disc(p - c) (tone - x)(p); its gain is that change against
        the loss's gradient (averaged over the chain samples of the round), summed over the disc: one
        correlation of grad * (tone - x) with the disc, read at every allowed centre at once. Centres
        are taken best first, none within a dot's width of one taken (their discs would mostly overlap).
        """
        b, (h, w) = len(x0), x0.shape[-2:]
        kernel = disc_kernel(self.width, self.softness).to(self.device)
        no_strokes = torch.zeros(b, 0, 3, 2, device=self.device)
        dots = torch.zeros(b, 0, 2, device=self.device)
        rounds = min(self.rounds, self.dots)
        samples = max(1, self.steps // rounds)
        cols = torch.arange(w, device=self.device).view(1, 1, w)
        rows = torch.arange(h, device=self.device).view(1, h, 1)
        for r in range(rounds):
            x = (self.render(x0, no_strokes, dots, tone)[0] if r else x0).detach().requires_grad_(True)
            grad = torch.zeros_like(x)
            for _ in range(samples):
                chain = self.eot[int(torch.randint(len(self.eot), (1,), generator=generator))]
                loss, _ = self._loss(chain(self.transform(x, generator)), goal, generator)
                grad += torch.autograd.grad((-loss if targeted else loss).sum(), x)[0] / samples
            with torch.no_grad():
                score = F.conv2d(grad * (tone - x), kernel, padding=kernel.shape[-1] // 2)[:, 0]  # (B, H, W)
                score = score.masked_fill(region[:, 0] <= 0, float("-inf"))
                picked = []
                for _ in range(self.dots * (r + 1) // rounds - self.dots * r // rounds):
                    best = score.flatten(1).argmax(1)  # (B,)
                    y, x_ = (best // w).view(b, 1, 1), (best % w).view(b, 1, 1)
                    picked.append(torch.stack([x_.view(b), y.view(b)], -1).float() + 0.5)
                    near = ((cols - x_) ** 2 + (rows - y) ** 2) < self.width ** 2
                    score = score.masked_fill(near, float("-inf"))
                dots = torch.cat([dots, torch.stack(picked, 1)], 1)
        with torch.no_grad():
            return self.render(x0, no_strokes, dots, tone)


class Texture(Momentum):
    """Dense noise placed by gradient through the clean-up chains: MI-FGSM whose every step reads the
    captcha after a sampled chain (expectation over transformation, straight-through thresholds).

    With a budget off the glyphs wider than the gap between background and threshold (the README's
    47/255 on classic), pixels can cross the threshold, and smoothed gradients (`smoothing`) make
    them cross in blobs a median or closing keeps: a mid-tone texture the threshold splits.
    Settings: TEXTURE, momentum's (early_stop off by default) with chains (EOT_CHAINS) and
    optimise (True; False: the control, a random texture of the same smoothness at the full budget).
    """

    name = "texture"
    settings = TEXTURE

    def __init__(self, solvers, **kwargs):
        super().__init__(solvers, **kwargs)
        self.eot = eot_chains(self.chains)

    def transform(self, x, generator):
        x = super().transform(x, generator)
        return self.eot[int(torch.randint(len(self.eot), (1,), generator=generator))](x)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None):
        if self.optimise:
            return super().attack_batch(images, labels, mask, targets, generator, budget)
        x0 = images.to(self.device, torch.float32)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        sign = self.smooth(noise).sign() if self.smoothing > 0 else noise.sign()
        radius = budget.to(self.device) if budget is not None else self.eps
        return (x0 + sign * radius * mask.to(self.device, torch.float32)).clamp(0, 1)
