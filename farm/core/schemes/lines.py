"""`lines`: bold mono glyphs on a shaded background, crossed by thick strike-through lines."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from farm.core.schemes.base import Scheme
from farm.core.schemes.draw import composite, font, glyph, texture

__all__ = ["LinesScheme"]


class LinesScheme(Scheme):
    """Dark bold glyphs with mild rotation, 2-3 thick lines through the text, a soft texture behind."""

    name = "lines"
    width, height = 180, 64
    lengths = (4, 6)
    description = "bold mono glyphs crossed by thick strike-through lines on a soft texture"
    font_name = "DejaVuSansMono-Bold.ttf"
    font_sizes: tuple[int, int] = (30, 38)
    rotation: tuple[float, float] = (-15.0, 15.0)
    line_count: tuple[int, int] = (2, 3)

    def draw(self, text, rng):
        H, W = self.height, self.width
        background = 200 + 40 * rng.random() + texture(rng, H, W, (4, 8), 14.0)
        ink = 20 + 70 * rng.random()
        canvas = background.astype(np.float32)
        mask = np.zeros((H, W), dtype=np.float32)
        size = int(rng.integers(self.font_sizes[0], self.font_sizes[1] + 1))
        face = font(self.font_name, size)
        glyphs = [glyph(c, face, rng.uniform(*self.rotation)) for c in text]
        total = sum(g.shape[1] for g in glyphs)
        gap = max(-4, min(6, (W - 12 - total) // max(len(glyphs) - 1, 1)))
        x = int((W - total - gap * (len(glyphs) - 1)) / 2) + int(rng.integers(-4, 5))
        for g in glyphs:
            y = (H - g.shape[0]) // 2 + int(rng.integers(-6, 7))
            mask = np.maximum(mask, composite(canvas, g, x, y, ink))
            x += g.shape[1] + gap
        lines = Image.new("L", (W, H))
        pen = ImageDraw.Draw(lines)
        for _ in range(int(rng.integers(self.line_count[0], self.line_count[1] + 1))):
            y0, y1 = rng.uniform(0.25 * H, 0.75 * H, 2)
            pen.line([(0, y0), (W, y1)], fill=255, width=int(rng.integers(2, 4)))
        composite(canvas, np.asarray(lines, dtype=np.float32) / 255.0, 0, 0, ink)
        return np.clip(canvas, 0, 255).round().astype(np.uint8), mask >= 0.5
