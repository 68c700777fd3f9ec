"""Drawing helpers shared by our own schemes: glyph coverage, compositing, smooth textures."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["font", "glyph", "composite", "texture", "FONTS"]

FONTS = resources.files("farm.core.schemes") / "fonts"


@lru_cache(maxsize=64)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A bundled font (shipped in the package so every machine draws the same pixels)."""
    with resources.as_file(FONTS / name) as path:
        return ImageFont.truetype(str(path), size)


def glyph(char: str, face: ImageFont.FreeTypeFont, angle: float) -> np.ndarray:
    """Coverage in [0, 1] of one rotated character, cropped to its ink. Shape (h, w) float32."""
    left, top, right, bottom = face.getbbox(char)
    im = Image.new("L", (right - left + 4, bottom - top + 4))
    ImageDraw.Draw(im).text((2 - left, 2 - top), char, font=face, fill=255)
    im = im.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    im = im.crop(im.getbbox())
    return np.asarray(im, dtype=np.float32) / 255.0


def composite(canvas: np.ndarray, coverage: np.ndarray, x: int, y: int, ink: float) -> np.ndarray:
    """Blend `ink` into canvas where coverage says, clipped at the borders; returns the pasted coverage."""
    h, w = coverage.shape
    H, W = canvas.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return np.zeros_like(canvas, dtype=np.float32)
    cov = coverage[y0 - y:y1 - y, x0 - x:x1 - x]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = region * (1 - cov) + ink * cov
    placed = np.zeros(canvas.shape, dtype=np.float32)
    placed[y0:y1, x0:x1] = cov
    return placed


def texture(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int], amplitude: float) -> np.ndarray:
    """Smooth random blobs: coarse gaussian noise upsampled bilinearly. Shape (height, width) float32."""
    coarse = rng.normal(0.0, amplitude, cells).astype(np.float32)
    im = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32)
