"""`classic`: the captcha package's ImageCaptcha, in its colours, seeded.

captcha 0.7.1 draws from `secrets`, so it can never repeat an image. We replay its drawing
steps in its order, with each `secrets` call answered from the numpy Generator handed to
`draw` (`_Draws`): for the same answers the image is byte for byte the package's
(tests/test_classic_colour.py). Besides the image we paste every glyph onto a mask canvas
so attacks know which pixels are characters.
"""

from __future__ import annotations

import numpy as np
from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw, ImageFilter

from farm.core.schemes.base import Scheme

__all__ = ["ClassicScheme"]


class _Draws:
    """The `secrets` calls ImageCaptcha makes, answered from a numpy Generator, one draw per call."""

    def __init__(self, rng: np.random.Generator):
        self._integers = rng.integers

    def randbelow(self, n: int) -> int:
        return int(self._integers(n))

    def random(self) -> float:
        """The package's `secrets.randbits(32) / (2**32)`."""
        return int(self._integers(2**32)) / (2**32)

    def choice(self, seq):
        return seq[int(self._integers(len(seq)))]

    def color(self, start: int, end: int) -> tuple[int, int, int]:
        """captcha.image.random_color's red, green, blue (its opacity argument is drawn by the caller, first)."""
        span = end - start + 1
        return (self.randbelow(span) + start, self.randbelow(span) + start, self.randbelow(span) + start)


class _SeededImageCaptcha(ImageCaptcha):
    """ImageCaptcha's drawing steps in its order, with `_Draws` for `secrets`, also drawing the glyph mask."""

    def __init__(self, width: int, height: int):
        super().__init__(width, height)
        self._glyphs: dict = {}  # (font, character) -> see _glyph
        self._paste_table = np.clip(self.lookup_table, 0, 255).astype(np.uint8)  # point() clips so

    def _glyph(self, font, c: str) -> tuple[int, int, Image.Image | None]:
        """The package's text box of `c` and its cropped coverage, drawn once per font and character.

        The package draws each character afresh at a whole-pixel offset, which moves the bitmap
        without changing it, and crops it to its ink: the crop is the same every time.
        """
        key = (font, c)
        if key not in self._glyphs:
            # multiline_textbbox with no image behind it: the package measures on its canvas, same numbers
            _, _, w, h = _MEASURE.multiline_textbbox((1, 1), c, font=font)
            coverage = Image.new("L", (int(w), int(h)))
            ImageDraw.Draw(coverage).text((0, 0), c, font=font, fill=255)
            box = coverage.getbbox()
            self._glyphs[key] = (w, h, coverage.crop(box) if box else None)
        return self._glyphs[key]

    def inked(self, font, c: str, color: tuple[int, int, int, int], dx1: int, dy1: int) -> Image.Image:
        """The package's `text((dx1, dy1), c, fill=color)` on a blank RGBA, cropped to its ink."""
        w, h, coverage = self._glyph(font, c)
        if coverage is None:  # nothing inked (a space): the package's crop(None) keeps the whole blank
            return Image.new("RGBA", (int(w) + dx1, int(h) + dy1))
        im = Image.new("RGBA", coverage.size)
        im.paste(color, None, coverage)  # the same fill through the same mask as drawing text
        return im

    def draw_character(self, c: str, color: tuple[int, int, int, int], draws: _Draws) -> Image.Image:
        font = draws.choice(self.truefonts)
        w, h, _ = self._glyph(font, c)
        dx = self.character_offset_dx
        dy = self.character_offset_dy
        dx1 = draws.randbelow(dx[1] - dx[0] + 1) + dx[0]
        dy1 = draws.randbelow(dy[1] - dy[0] + 1) + dy[0]
        im = self.inked(font, c, color, dx1, dy1)
        low, high = self.character_rotate
        im = im.rotate(low + draws.random() * (high - low), Image.Resampling.BILINEAR, expand=True)
        warp_x, warp_y = self.character_warp_dx, self.character_warp_dy
        dx2 = w * draws.random() * (warp_x[1] - warp_x[0]) + warp_x[0]
        dy2 = h * draws.random() * (warp_y[1] - warp_y[0]) + warp_y[0]
        # the package's float expressions exactly, so the corners round the same way
        x1 = int(draws.random() * (dx2 - (-dx2)) + (-dx2))
        y1 = int(draws.random() * (dy2 - (-dy2)) + (-dy2))
        x2 = int(draws.random() * (dx2 - (-dx2)) + (-dx2))
        y2 = int(draws.random() * (dy2 - (-dy2)) + (-dy2))
        w2, h2 = w + abs(x1) + abs(x2), h + abs(y1) + abs(y2)
        quad = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)
        im = im.resize((int(w2), int(h2)))
        return im.transform((int(w), int(h)), Image.Transform.QUAD, quad)

    def draw_text(self, chars: str, color: tuple[int, int, int, int], background: tuple[int, int, int],
                  draws: _Draws) -> tuple[Image.Image, np.ndarray]:
        images = []
        for c in chars:
            if draws.random() > self.word_space_probability:
                images.append(self.draw_character(" ", color, draws))
            images.append(self.draw_character(c, color, draws))
        text_width = sum(im.size[0] for im in images)
        width = max(text_width, self._width)
        # the package draws a (width, height) canvas and resizes it: uniform either way
        image = Image.new("RGB", (width, self._height), background)
        glyphs = np.zeros((self._height, width), dtype=bool)
        average = int(text_width / len(chars))
        rand = int(self.word_offset_dx * average)
        offset = int(average * 0.1)
        for im in images:
            w, h = im.size
            position = (offset, int((self._height - h) / 2))
            # the package's im.convert("L").point(lookup_table), through a numpy table
            image.paste(im, position, Image.fromarray(self._paste_table[np.asarray(im.convert("L"))]))
            # a pixel is glyph where the character covers at least half of it: its alpha is opacity x coverage
            _cover(glyphs, 2 * np.asarray(im.getchannel("A"), dtype=np.uint16) >= color[3], position)
            offset = offset + w + (-draws.randbelow(rand + 1))
        if width > self._width:
            image = image.resize((self._width, self._height))
            glyphs = Image.fromarray(glyphs.astype(np.uint8) * 255).resize((self._width, self._height))
            glyphs = np.asarray(glyphs) >= 128
        return image, glyphs

    def draw_noise(self, image: Image.Image, color: tuple[int, int, int, int], draws: _Draws) -> None:
        draw = ImageDraw.Draw(image)
        w, h = image.size
        for _ in range(30):  # the package's noise dots
            x1, y1 = draws.randbelow(w + 1), draws.randbelow(h + 1)
            draw.line(((x1, y1), (x1 - 1, y1 - 1)), fill=color, width=3)
        x1 = draws.randbelow(int(w / 5) + 1)  # its noise curve
        x2 = draws.randbelow(w - int(w / 5) + 1) + int(w / 5)
        y1 = draws.randbelow(h - 2 * int(h / 5) + 1) + int(h / 5)
        y2 = draws.randbelow(h - y1 - int(h / 5) + 1) + y1
        end = draws.randbelow(41) + 160
        start = draws.randbelow(21)
        draw.arc([x1, y1, x2, y2], start, end, fill=color)


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))


def _cover(mask: np.ndarray, glyph: np.ndarray, position: tuple[int, int]) -> None:
    """mask |= glyph with its top left corner at position (x, y), clipped to mask as Image.paste clips."""
    x, y = position
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + glyph.shape[0], mask.shape[0]), min(x + glyph.shape[1], mask.shape[1])
    if top < bottom and left < right:
        mask[top:bottom, left:right] |= glyph[top - y:bottom - y, left - x:right - x]


class ClassicScheme(Scheme):
    """The target scheme: ImageCaptcha's 160x60 colour look, its DroidSansMono font, 4 characters.

    Shape: image uint8 (60, 160, 3) RGB, glyph mask bool (60, 160).
    """

    name = "classic"
    mode = "RGB"
    width, height = 160, 60
    lengths = (4, 4)
    description = "the captcha package's ImageCaptcha in colour: warped mono glyphs, dots and an arc"

    def __init__(self):
        self._generator = _SeededImageCaptcha(self.width, self.height)

    def draw(self, text, rng):
        draws = _Draws(rng)
        background = draws.color(238, 255)
        opacity = draws.randbelow(36) + 220  # the package draws it first: an argument of its random_color
        color = (*draws.color(10, 200), opacity)
        image, glyphs = self._generator.draw_text(text, color, background, draws)
        self._generator.draw_noise(image, color, draws)
        image = image.filter(ImageFilter.SMOOTH)
        return np.asarray(image, dtype=np.uint8), glyphs
