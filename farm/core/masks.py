"""Where an attack may change a captcha: the masks a spec names, as boolean arrays (True = may change)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from farm.core.measures import glyph_region
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec

__all__ = ["allowed", "glyph_budget", "stroke_mask", "STROKES"]

STROKES = 8  # curves per captcha of the strokes mask


def stroke_mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Random thin curves across the captcha, like the noise curves people already skip when reading.

    The strokes mask lets the attack change only these curves (off the glyphs), so the perturbation
    looks like more captcha noise rather than grain over the whole background.
    """
    rng = np.random.default_rng([seed, 77])
    h, w = shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(STROKES):
        p0, p1, p2 = rng.uniform([0, 0], [w, h], size=(3, 2))
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # a quadratic Bezier curve
        draw.line([tuple(p) for p in curve], fill=255, width=int(rng.integers(2, 4)))
    return np.asarray(canvas) > 0


def allowed(spec: PoolSpec, glyphs: np.ndarray, indices: list[int], seeds: Seeds) -> np.ndarray:
    """(N, H, W) bool: where the attack may act on captchas `indices` of a pool, given their glyph masks."""
    if spec.mask == "full":
        return np.ones_like(glyphs)
    if spec.mask == "glyph":
        return glyphs.copy()
    if spec.mask == "background":
        return ~glyph_region(glyphs, spec.margin)
    if spec.mask == "strokes":
        strokes = np.stack([stroke_mask(g.shape, seeds.captcha(spec.seed, i)) for i, g in zip(indices, glyphs)])
        return strokes & ~glyph_region(glyphs, spec.margin)
    return np.broadcast_to(spec.user_mask(), glyphs.shape).copy()


def glyph_budget(spec: PoolSpec, glyphs: np.ndarray) -> np.ndarray | None:
    """(N, H, W) per-pixel L-inf budget: eps_glyph on the glyphs (dilated by margin), eps off them; None if uniform."""
    if spec.eps_glyph is None:
        return None
    region = glyph_region(glyphs, spec.margin)
    return np.where(region, spec.eps_glyph, spec.eps)
