"""`dotted`: a captchafarm scheme plugin. Glyphs made of dots on a hatched background, lowercase alphabet.

Each character is rasterised as usual, then shown only through a rotated lattice of round dots:
a dot is inked where the glyph covers the lattice site under its centre. A sparse sprinkle of
the same dots off the glyphs and a diagonal hatching behind make it harder for a bot than for a
person, who joins the dots without effort.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from farm.core.schemes import Scheme
from farm.core.schemes.draw import composite, font, glyph, texture

__all__ = ["DottedScheme"]

FONT = "DejaVuSansMono-Bold.ttf"  # shipped with captchafarm; serif strokes are too thin to dot


@lru_cache(maxsize=4096)
def _glyph(char: str, size: int, degrees: int) -> tuple[np.ndarray, float]:
    """Coverage of one character and the row of its centre below the line's top; cached, as
    rasterising and rotating is most of the drawing time. Shape (h, w) float32."""
    face = font(FONT, size)
    _, top, _, bottom = face.getbbox(char)
    return glyph(char, face, degrees), (top + bottom) / 2


class DottedScheme(Scheme):
    """Dot-matrix glyphs over diagonal hatching; 5-6 lowercase letters and digits, 180x56."""

    name = "dotted"
    width, height = 180, 56
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no i l o 0 1: people confuse them once dotted
    lengths = (5, 6)
    description = "dot-matrix lowercase glyphs over diagonal hatching, with stray dots"
    font_sizes: tuple[int, int] = (38, 44)
    rotation: tuple[int, int] = (-12, 12)  # whole degrees, so glyphs can be cached
    pitch: tuple[float, float] = (2.8, 3.3)  # lattice spacing, pixels: two dots or more across a stroke
    radius: tuple[float, float] = (1.0, 1.3)  # of a dot; at pitch / 2 neighbouring dots would merge
    stray: tuple[float, float] = (0.02, 0.05)  # share of off-glyph lattice sites that get a dot anyway
    hatch_spacing: tuple[int, int] = (6, 9)

    def __init__(self):
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        self._grid = ys.astype(np.float32), xs.astype(np.float32)  # pixel coordinates, each (H, W)
        self._diagonals = xs + ys, xs - ys + self.height  # which hatching line a pixel is on, either slope

    def draw(self, text, rng):
        H, W = self.height, self.width
        # glyph coverage in [0, 1], on a common baseline (so g and 9 differ), left to right with jitter
        size = int(rng.integers(self.font_sizes[0], self.font_sizes[1] + 1))
        angles = rng.integers(self.rotation[0], self.rotation[1] + 1, len(text)).tolist()
        while True:  # smaller until the text fits: wide letters (m, w) at 6 characters would not
            glyphs = [_glyph(c, size, a) for c, a in zip(text, angles)]
            total = sum(g.shape[1] for g, _ in glyphs)
            if total - 2 * (len(text) - 1) <= W - 8 or size <= 20:
                break
            size -= 2
        ascent, descent = font(FONT, size).getmetrics()
        top = (H - ascent - descent) // 2 + int(rng.integers(-2, 3))
        coverage = np.zeros((H, W), dtype=np.float32)
        gap = max(-2, min(6, (W - 8 - total) // max(len(glyphs) - 1, 1)))
        span = total + gap * (len(glyphs) - 1)
        x = int(np.clip((W - span) // 2 + rng.integers(-3, 4), 2, max(2, W - 2 - span)))
        for g, centre in glyphs:
            composite(coverage, g, x, round(top + centre - g.shape[0] / 2) + int(rng.integers(-2, 3)), 1.0)
            x += g.shape[1] + gap

        # the dot lattice, rotated by `angle` and shifted by (du, dv); python floats keep arrays float32
        pitch, radius = float(rng.uniform(*self.pitch)), float(rng.uniform(*self.radius))
        angle, du, dv = float(rng.uniform(-np.pi / 8, np.pi / 8)), float(rng.random()), float(rng.random())
        cos, sin = float(np.cos(angle)), float(np.sin(angle))
        ys, xs = self._grid
        u = (xs * cos + ys * sin) / pitch + du  # lattice coordinates of each pixel, (H, W)
        v = (ys * cos - xs * sin) / pitch + dv
        fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5  # from the centre of its site
        dot = np.clip(radius + 0.5 - pitch * np.sqrt(fu * fu + fv * fv), 0, 1)  # antialiased disc
        # a dot is glyph or not as a whole: as the glyph covers its site's centre, back in pixels
        cx = np.rint(xs - pitch * (fu * cos - fv * sin)).clip(0, W - 1).astype(np.intp)
        cy = np.rint(ys - pitch * (fu * sin + fv * cos)).clip(0, H - 1).astype(np.intp)
        on_glyph = coverage[cy, cx] >= 0.5
        stray = rng.random((H, W))[cy, cx] < rng.uniform(*self.stray)  # one draw per site (its centre pixel)

        # paper, hatching, then the dots
        canvas = 222 + 28 * float(rng.random()) + texture(rng, H, W, (3, 6), 8.0)
        spacing = int(rng.integers(self.hatch_spacing[0], self.hatch_spacing[1] + 1))
        diagonal = self._diagonals[int(rng.integers(2))]
        canvas[(diagonal + int(rng.integers(spacing))) % spacing == 0] -= float(rng.uniform(45, 75))
        ink = 15 + 70 * float(rng.random())
        alpha = dot * (on_glyph | stray)
        canvas = canvas * (1 - alpha) + ink * alpha
        return np.clip(canvas, 0, 255).round().astype(np.uint8), (dot >= 0.5) & on_glyph
