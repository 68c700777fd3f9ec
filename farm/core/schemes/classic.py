"""`classic`: the captcha package's ImageCaptcha, in its colours, seeded.

captcha 0.7.1 draws from `secrets`, so it can never repeat an image. We replay its drawing
steps in its order, with each `secrets` call answered from the numpy Generator handed to
`draw` (`_Draws`): for the same answers the image is byte for byte the package's
(tests/test_classic_colour.py). Besides the image we paste every glyph onto a mask canvas
so attacks know which pixels are characters.

Where the package does work that cannot change a pixel we skip it (rendering keeps up with
the package while also drawing the mask): each glyph is inked once per font and character,
the blank word spaces are measured but not warped, the uniform canvas is not resized.
"""

from __future__ import annotations

import numpy as np
from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw, ImageFilter

from farm.core.colour import grey_array
from farm.core.schemes.base import Scheme

__all__ = ["ClassicScheme", "ClassicGreyScheme"]

BITS = 2**32  # the package's randbits(32) / (2**32): a randbelow(2**32) scaled to [0, 1)


class _Draws:
    """ImageCaptcha's `secrets` calls answered from a numpy Generator.

    randbelow(n) is integers(n), randbits(32) is integers(2**32), choice(seq) is
    seq[integers(len(seq))]. `below` answers consecutive calls at once: numpy draws an array of
    bounds one element after the other, as it draws them one call at a time, at a tenth of the cost.
    """

    def __init__(self, rng: np.random.Generator):
        self._integers = rng.integers

    def below(self, bounds) -> list[int]:
        return self._integers(bounds).tolist()

    def randbelow(self, n: int) -> int:
        return int(self._integers(n))


class _SeededImageCaptcha(ImageCaptcha):
    """ImageCaptcha's drawing steps in its order, with `_Draws` for `secrets`, also drawing the glyph mask."""

    def __init__(self, width: int, height: int):
        super().__init__(width, height)
        self._glyphs: dict = {}  # (font, character) -> see _glyph
        self._paste_table = np.clip(self.lookup_table, 0, 255).astype(np.uint8)  # point() clips so
        dx, dy = self.character_offset_dx, self.character_offset_dy
        # a character's draws: font, offsets dx1 and dy1, then 7 randbits: rotation, warp dx2, dy2, x1, y1, x2, y2
        self._character_bounds = np.array([len(self.truefonts), dx[1] - dx[0] + 1, dy[1] - dy[0] + 1] + [BITS] * 7)

    def _glyph(self, font, c: str) -> tuple[int, int, Image.Image | None]:
        """The package's text box of `c` and its coverage cropped to the ink (None: no ink), once per font and c.

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

    def draw_character(self, c: str, color: tuple[int, int, int, int],
                       draws: _Draws) -> tuple[tuple[int, int], Image.Image | None]:
        """The package's _draw_character: (its size, the image; None when blank, as a space is)."""
        self.poses.append(draws.below(self._character_bounds))
        return self.posed(c, color, self.poses[-1])

    def posed(self, c: str, color: tuple[int, int, int, int],
              pose: list[int]) -> tuple[tuple[int, int], Image.Image | None]:
        """`c` drawn in a character's draws (font, offsets, rotation, warp): (its size, the image; None if blank)."""
        font, dx1, dy1, *bits = pose
        font = self.truefonts[font]
        dx1, dy1 = dx1 + self.character_offset_dx[0], dy1 + self.character_offset_dy[0]
        rotation, warp_x, warp_y, *corners = (b / BITS for b in bits)
        w, h, coverage = self._glyph(font, c)
        size = (int(w), int(h))
        if coverage is None:  # rotating and warping nothing gives nothing: only the size matters
            return size, None
        im = self.inked(font, c, color, dx1, dy1)
        low, high = self.character_rotate
        im = im.rotate(low + rotation * (high - low), Image.Resampling.BILINEAR, expand=True)
        wx, wy = self.character_warp_dx, self.character_warp_dy
        dx2 = w * warp_x * (wx[1] - wx[0]) + wx[0]
        dy2 = h * warp_y * (wy[1] - wy[0]) + wy[0]
        # the package's float expressions exactly, so the corners round the same way
        x1, y1, x2, y2 = (int(r * (d - (-d)) + (-d)) for r, d in zip(corners, (dx2, dy2, dx2, dy2)))
        w2, h2 = w + abs(x1) + abs(x2), h + abs(y1) + abs(y2)
        quad = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)
        im = im.resize((int(w2), int(h2)))
        return size, im.transform(size, Image.Transform.QUAD, quad)

    def draw_text(self, chars: str, color: tuple[int, int, int, int], background: tuple[int, int, int],
                  draws: _Draws) -> tuple[Image.Image, np.ndarray]:
        """The package's text, and its glyph mask; `placed` keeps each character's draws and position, blanks too,
        so `shapes` can draw another character in its place."""
        self.poses, self.color, images = [], color, []
        for c in chars:
            if draws.randbelow(BITS) / BITS > self.word_space_probability:
                images.append(self.draw_character(" ", color, draws))
            images.append(self.draw_character(c, color, draws))
        text_width = sum(size[0] for size, _ in images)
        width = max(text_width, self._width)
        # the package draws a (width, height) canvas and resizes it: uniform either way
        image = Image.new("RGB", (width, self._height), background)
        glyphs = np.zeros((self._height, width), dtype=bool)
        self.canvas_width = width
        average = int(text_width / len(chars))
        rand = int(self.word_offset_dx * average)
        offset = int(average * 0.1)
        self.placed = []
        for ((w, h), im), step_back, pose in zip(images, draws.below([rand + 1] * len(images)), self.poses):
            position = (offset, int((self._height - h) / 2))
            self.placed.append((pose, position, im is None))
            if im is not None:  # a blank's paste mask is all 0: it changes nothing
                # the package's im.convert("L").point(lookup_table), through a numpy table
                image.paste(im, position, Image.fromarray(self._paste_table[np.asarray(im.convert("L"))]))
                _cover(glyphs, covered(im, color), position)
            offset = offset + w + (-step_back)
        if width > self._width:
            image = image.resize((self._width, self._height))
        return image, self.fit(glyphs)

    def fit(self, glyphs: np.ndarray) -> np.ndarray:
        """A glyph mask of the text's canvas, resized to the captcha as the package resizes a canvas wider than it."""
        if glyphs.shape[1] <= self._width:
            return glyphs
        return np.asarray(Image.fromarray(glyphs.astype(np.uint8) * 255).resize((self._width, self._height))) >= 128

    def shapes(self, alphabet: str) -> np.ndarray:
        """After draw_text: each character's glyph drawn as every character of `alphabet`, in its draws and at its
        place, the blanks left out. Shape (characters, len(alphabet), H, W) bool."""
        out = []
        for pose, position, blank in self.placed:
            if blank:
                continue
            masks = []
            for a in alphabet:
                canvas = np.zeros((self._height, self.canvas_width), dtype=bool)
                (_, ha), im = self.posed(a, self.color, pose)
                if im is not None:  # centred down the captcha as the package centres a character of its height
                    _cover(canvas, covered(im, self.color), (position[0], int((self._height - ha) / 2)))
                masks.append(self.fit(canvas))
            out.append(np.stack(masks))
        return np.stack(out)

    def draw_noise(self, image: Image.Image, color: tuple[int, int, int, int], draws: _Draws) -> None:
        draw = ImageDraw.Draw(image)
        w, h = image.size
        dots = draws.below([w + 1, h + 1] * 30)  # the package's 30 noise dots
        for x1, y1 in zip(dots[::2], dots[1::2]):
            draw.line(((x1, y1), (x1 - 1, y1 - 1)), fill=color, width=3)
        x1, x2, y1 = draws.below([int(w / 5) + 1, w - int(w / 5) + 1, h - 2 * int(h / 5) + 1])  # its curve
        x2, y1 = x2 + int(w / 5), y1 + int(h / 5)
        y2 = draws.randbelow(h - y1 - int(h / 5) + 1) + y1
        end, start = draws.below([41, 21])
        draw.arc([x1, y1, x2, y2], start, end + 160, fill=color)


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))


def covered(im: Image.Image, color: tuple[int, int, int, int]) -> np.ndarray:
    """Where a drawn character is glyph: it covers at least half of the pixel (alpha is opacity x coverage)."""
    return 2 * np.asarray(im.getchannel("A"), dtype=np.uint16) >= color[3]


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
        # random_color(238, 255), then random_color(10, 200, randbelow(36) + 220): the argument is drawn first
        *background, opacity, r, g, b = draws.below([18, 18, 18, 36, 191, 191, 191])
        color = (r + 10, g + 10, b + 10, opacity + 220)
        image, glyphs = self._generator.draw_text(text, color, tuple(c + 238 for c in background), draws)
        self._generator.draw_noise(image, color, draws)
        image = image.filter(ImageFilter.SMOOTH)
        return np.asarray(image, dtype=np.uint8), glyphs

    def shapes(self, text, seed):
        """Each character of `text` drawn from `seed` as every character of the alphabet, in its pose and place."""
        self.draw(text, np.random.default_rng(seed))
        return self._generator.shapes(self.alphabet)


class ClassicGreyScheme(ClassicScheme):
    """`classic` in grey, as platforms served it before colour: the luminance of the same draw, the same mask.

    PIL's convert("L") (BT.601), what a bot's Image.open(...).convert("L") gets: the grey default colour pools are
    judged against (benchmarks/colour.py), and grey `classic` for the grey-only generator spike (issue 27).
    Shape: image uint8 (60, 160), glyph mask bool (60, 160).
    """

    name = "classic_grey"
    mode = "L"
    description = "classic's luminance (PIL's convert(\"L\")): the package's look in grey, same glyph mask"

    def draw(self, text, rng):
        image, glyphs = super().draw(text, rng)
        return grey_array(image), glyphs
