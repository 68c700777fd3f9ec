"""`wave`: light serif glyphs on a dark blotchy background, overlapping, the whole line sine-warped."""

from __future__ import annotations

import numpy as np

from farm.core.schemes.base import Scheme
from farm.core.schemes.draw import composite, font, glyph, texture

__all__ = ["WaveScheme"]


class WaveScheme(Scheme):
    """Inverted polarity, touching serif glyphs and a vertical sine warp, as many bank captchas do."""

    name = "wave"
    width, height = 192, 64
    lengths = (4, 6)
    description = "light overlapping serif glyphs on dark blotches, sine-warped"
    font_name = "DejaVuSerif-Bold.ttf"
    font_sizes: tuple[int, int] = (28, 34)
    rotation: tuple[float, float] = (-25.0, 25.0)
    overlap: tuple[int, int] = (2, 6)  # pixels each glyph moves onto its left neighbour
    amplitude: tuple[float, float] = (3.0, 7.0)  # of the warp, in pixels

    def draw(self, text, rng):
        H, W = self.height, self.width
        canvas = 40 + 40 * rng.random() + texture(rng, H, W, (6, 16), 18.0)
        ink = 215 + 40 * rng.random()
        mask = np.zeros((H, W), dtype=np.float32)
        face = font(self.font_name, int(rng.integers(self.font_sizes[0], self.font_sizes[1] + 1)))
        glyphs = [glyph(c, face, rng.uniform(*self.rotation)) for c in text]
        overlap = int(rng.integers(self.overlap[0], self.overlap[1] + 1))
        total = sum(g.shape[1] for g in glyphs) - overlap * (len(glyphs) - 1)
        x = max(2, (W - total) // 2 + int(rng.integers(-5, 6)))
        for g in glyphs:
            y = (H - g.shape[0]) // 2 + int(rng.integers(-4, 5))
            mask = np.maximum(mask, composite(canvas, g, x, y, ink))
            x += g.shape[1] - overlap
        # warp: each column moves up or down along one sine period or less
        amplitude = rng.uniform(*self.amplitude)
        period = rng.uniform(0.8, 1.6) * W
        shift = np.round(amplitude * np.sin(2 * np.pi * np.arange(W) / period + rng.uniform(0, 2 * np.pi))).astype(int)
        rows = np.clip(np.arange(H)[:, None] - shift[None, :], 0, H - 1)
        cols = np.arange(W)[None, :]
        canvas, mask = canvas[rows, cols], mask[rows, cols]
        speckle = rng.normal(0.0, 6.0, (H, W))
        return np.clip(canvas + speckle, 0, 255).round().astype(np.uint8), mask >= 0.5
