"""Usability measures of a perturbation: how far it moved pixels and how much the image still looks the same."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["measure", "glyph_region"]


def glyph_region(glyphs: np.ndarray, margin: int = 2) -> np.ndarray:
    """The glyph mask dilated by `margin` pixels: the strokes and their edges, what a reader looks at."""
    return binary_dilation(glyphs, iterations=margin) if margin > 0 else glyphs


def measure(clean: np.ndarray, adversarial: np.ndarray, glyphs: np.ndarray) -> dict:
    """L-inf and L2 (pixels in [0, 1]), SSIM (whole and glyph region), PSNR, share of pixels changed."""
    a = clean.astype(np.float64) / 255
    b = adversarial.astype(np.float64) / 255
    diff = b - a
    changed = diff != 0
    ssim, ssim_map = structural_similarity(clean, adversarial, data_range=255, full=True)
    region = glyph_region(glyphs)
    return {
        "linf": round(float(np.abs(diff).max()), 6),
        "l2": round(float(np.sqrt((diff ** 2).sum())), 6),
        "ssim": round(float(ssim), 6),
        "ssim_glyph": round(float(ssim_map[region].mean()) if region.any() else 1.0, 6),
        "psnr": round(float(peak_signal_noise_ratio(clean, adversarial, data_range=255)) if changed.any() else 100.0, 4),
        "changed": round(float(changed.mean()), 6),
        "glyph_changed": round(float(changed[glyphs].mean()) if glyphs.any() else 0.0, 6),
    }
