"""Usability measures of a perturbation: how far it moved pixels and how much the image still looks the same.

Colour captchas are judged as a person sees them: SSIM on luminance (the BT.601 grey people read
shapes by) and on colour (SSIM per RGB channel, averaged), each over the whole image and the glyph region.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from farm.core.colour import grey_array

__all__ = ["measure", "glyph_region"]


def glyph_region(glyphs: np.ndarray, margin: int = 2) -> np.ndarray:
    """The glyph mask (H, W), or a batch of them (..., H, W), dilated by `margin` pixels: the strokes and their
    edges, what a reader looks at.

    scipy's binary_dilation with its default cross, `margin` times, done on the whole batch at once by shifting:
    one scipy call per mask was most of the mask work of a generator captcha.
    """
    region = np.asarray(glyphs, dtype=bool)
    for _ in range(margin):
        grown = region.copy()
        grown[..., 1:, :] |= region[..., :-1, :]
        grown[..., :-1, :] |= region[..., 1:, :]
        grown[..., :, 1:] |= region[..., :, :-1]
        grown[..., :, :-1] |= region[..., :, 1:]
        region = grown
    return region


def _ssim(clean: np.ndarray, adversarial: np.ndarray, region: np.ndarray, colour: bool = False) -> tuple[float, float]:
    """(whole-image SSIM, its mean over `region`); colour: per channel, averaged."""
    ssim, ssim_map = structural_similarity(clean, adversarial, data_range=255, full=True,
                                           channel_axis=2 if colour else None)
    if colour:
        ssim_map = ssim_map.mean(2)
    return round(float(ssim), 6), round(float(ssim_map[region].mean()) if region.any() else 1.0, 6)


def measure(clean: np.ndarray, adversarial: np.ndarray, glyphs: np.ndarray) -> dict:
    """L-inf and L2 (pixels in [0, 1], every channel), SSIM (whole and glyph region), PSNR, share of pixels changed.

    Colour images add `ssim_colour` and `ssim_glyph_colour`; their `ssim` and `ssim_glyph` are on luminance.
    """
    a = clean.astype(np.float64) / 255
    b = adversarial.astype(np.float64) / 255
    diff = b - a
    colour = clean.ndim == 3
    changed = (diff != 0).any(2) if colour else diff != 0
    region = glyph_region(glyphs)
    ssim, ssim_glyph = _ssim(grey_array(clean), grey_array(adversarial), region)
    result = {
        "linf": round(float(np.abs(diff).max()), 6),
        "l2": round(float(np.sqrt((diff ** 2).sum())), 6),
        "ssim": ssim,
        "ssim_glyph": ssim_glyph,
        "psnr": round(float(peak_signal_noise_ratio(clean, adversarial, data_range=255)) if changed.any() else 100.0, 4),
        "changed": round(float(changed.mean()), 6),
        "glyph_changed": round(float(changed[glyphs].mean()) if glyphs.any() else 0.0, 6),
    }
    if colour:
        result["ssim_colour"], result["ssim_glyph_colour"] = _ssim(clean, adversarial, region, colour=True)
    return result
