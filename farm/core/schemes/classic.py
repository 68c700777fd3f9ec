"""`classic`: the look of the `captcha` package's ImageCaptcha, built on the package, seeded.

captcha 0.7.1 draws from `secrets`, so it can never repeat an image. We subclass
ImageCaptcha and replay its drawing steps with an injected generator: same font, sizes,
offsets, rotations, warps, noise dots and curve, smoothing. Drawing happens directly in
grayscale ("L"), which is what we serve and is cheaper than RGB, and every glyph is also
pasted onto a mask canvas so attacks know which pixels are characters.
"""

from __future__ import annotations

import numpy as np
from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw, ImageFilter

from farm.core.schemes.base import Scheme

__all__ = ["ClassicScheme"]


def _gray(rng: np.random.Generator, start: int, end: int) -> int:
    """Luminance of ImageCaptcha's random_color(start, end), as PIL's RGB->L conversion computes it."""
    r, g, b = (int(v) for v in rng.integers(start, end + 1, 3))
    return (r * 299 + g * 587 + b * 114) // 1000


class _SeededImageCaptcha(ImageCaptcha):
    """ImageCaptcha with its `secrets` calls replaced by a numpy Generator, drawing in "L"."""

    def draw_character(self, c: str, color: int, rng: np.random.Generator) -> Image.Image:
        font = self.truefonts[int(rng.integers(len(self.truefonts)))]
        # multiline_textbbox with no image behind it: the package measures on its canvas, same numbers
        _, _, w, h = _MEASURE.multiline_textbbox((1, 1), c, font=font)
        dx1 = int(rng.integers(self.character_offset_dx[0], self.character_offset_dx[1] + 1))
        dy1 = int(rng.integers(self.character_offset_dy[0], self.character_offset_dy[1] + 1))
        im = Image.new("L", (int(w) + dx1, int(h) + dy1))
        ImageDraw.Draw(im).text((dx1, dy1), c, font=font, fill=color)
        im = im.crop(im.getbbox())
        low, high = self.character_rotate
        im = im.rotate(low + rng.random() * (high - low), Image.Resampling.BILINEAR, expand=True)
        dx2 = w * rng.random() * (self.character_warp_dx[1] - self.character_warp_dx[0]) + self.character_warp_dx[0]
        dy2 = h * rng.random() * (self.character_warp_dy[1] - self.character_warp_dy[0]) + self.character_warp_dy[0]
        x1, y1, x2, y2 = (int(rng.random() * 2 * d - d) for d in (dx2, dy2, dx2, dy2))
        w2, h2 = w + abs(x1) + abs(x2), h + abs(y1) + abs(y2)
        quad = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)
        im = im.resize((int(w2), int(h2)))
        return im.transform((int(w), int(h)), Image.Transform.QUAD, quad)

    def draw_text(self, chars: str, color: int, background: int,
                  rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
        images = []
        for c in chars:
            if rng.random() > self.word_space_probability:
                images.append(self.draw_character(" ", color, rng))
            images.append(self.draw_character(c, color, rng))
        text_width = sum(im.size[0] for im in images)
        width = max(text_width, self._width)
        image = Image.new("L", (width, self._height), background)
        glyphs = Image.new("L", (width, self._height), 0)
        average = int(text_width / len(chars))
        rand = int(self.word_offset_dx * average)
        offset = int(average * 0.1)
        # a pixel is glyph where the character covers at least half of it
        covered = [0 if v * 2 < color else 255 for v in range(256)]
        for im in images:
            w, h = im.size
            position = (offset, int((self._height - h) / 2))
            image.paste(im, position, im.point(self.lookup_table))
            glyphs.paste(255, position, im.point(covered))
            offset = offset + w - int(rng.integers(rand + 1))
        if width > self._width:
            image = image.resize((self._width, self._height))
            glyphs = glyphs.resize((self._width, self._height))
        return image, glyphs

    def draw_noise(self, image: Image.Image, color: int, rng: np.random.Generator) -> None:
        draw = ImageDraw.Draw(image)
        w, h = image.size
        for _ in range(30):  # the package's noise dots
            x1, y1 = int(rng.integers(w + 1)), int(rng.integers(h + 1))
            draw.line(((x1, y1), (x1 - 1, y1 - 1)), fill=color, width=3)
        x1 = int(rng.integers(int(w / 5) + 1))  # its noise curve
        x2 = int(rng.integers(w - int(w / 5) + 1)) + int(w / 5)
        y1 = int(rng.integers(h - 2 * int(h / 5) + 1)) + int(h / 5)
        y2 = int(rng.integers(h - y1 - int(h / 5) + 1)) + y1
        end, start = int(rng.integers(41)) + 160, int(rng.integers(21))
        draw.arc([x1, y1, x2, y2], start, end, fill=color)


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))


class ClassicScheme(Scheme):
    """The target scheme: ImageCaptcha's 160x60 look, its DroidSansMono font, 4 characters."""

    name = "classic"
    width, height = 160, 60
    lengths = (4, 4)
    description = "the captcha package's ImageCaptcha look: warped mono glyphs, dots and an arc"

    def __init__(self):
        self._generator = _SeededImageCaptcha(self.width, self.height)

    def draw(self, text, rng):
        background = _gray(rng, 238, 255)
        color = _gray(rng, 10, 200)
        image, glyphs = self._generator.draw_text(text, color, background, rng)
        self._generator.draw_noise(image, color, rng)
        image = image.filter(ImageFilter.SMOOTH)
        return np.asarray(image, dtype=np.uint8), np.asarray(glyphs) >= 128
