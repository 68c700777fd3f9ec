"""`classic` is the captcha package's ImageCaptcha in colour: the package's own bytes for the same draws."""

import captcha.image
import numpy as np
import pytest
from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw
from scipy.ndimage import binary_dilation

from farm.core.charset import DEFAULT_ALPHABET
from farm.core.schemes import get_scheme
from farm.core.schemes.classic import ClassicScheme


class NumpySecrets:
    """Stands in for `secrets` inside captcha.image: its three calls, each one draw from a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def randbelow(self, n):
        return int(self.rng.integers(n))

    def randbits(self, k):
        assert k == 32, "captcha 0.7.1 only asks for 32 bits"
        return int(self.rng.integers(2**32))

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]


TEXTS = ["AB3D", "X9QZ", "M2K7", "TT4W", "0O1I", "WWMM"]


@pytest.mark.parametrize("seed", range(20))
def test_classic_is_the_packages_image_byte_for_byte(monkeypatch, seed):
    text = TEXTS[seed % len(TEXTS)]
    monkeypatch.setattr(captcha.image, "secrets", NumpySecrets(np.random.default_rng(seed)))
    theirs = np.asarray(ImageCaptcha().generate_image(text))
    ours, mask = ClassicScheme().draw(text, np.random.default_rng(seed))
    assert ours.dtype == np.uint8 and ours.shape == (60, 160, 3) == theirs.shape
    assert np.array_equal(ours, theirs), f"seed {seed}: {np.count_nonzero(ours != theirs)} values differ"
    assert mask.dtype == bool and mask.shape == (60, 160)


def test_classic_declares_rgb():
    assert ClassicScheme.mode == "RGB"


def test_glyph_mask_lies_on_the_coloured_text():
    scheme = ClassicScheme()
    for seed in range(20):
        image, mask = scheme.draw("AB3D", np.random.default_rng(seed))
        image = image.astype(float)
        background = np.median(image[~binary_dilation(mask, iterations=3)], axis=0)
        ink = np.abs(image - background).max(axis=2)  # the farthest channel: glyphs differ in colour, not only grey
        assert mask.any() and ink[mask].mean() > 40, f"seed {seed}: mask pixels look like background"
        cols = np.flatnonzero(mask.any(0))
        assert cols[-1] - cols[0] > scheme.width * 0.35
        assert not (mask & ~binary_dilation(ink > 25, iterations=2)).any()


def test_same_seed_same_bytes_and_each_seed_its_own_colours():
    scheme = ClassicScheme()
    a, b = (scheme.draw("AB3D", np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    corners = {tuple(scheme.draw("AB3D", np.random.default_rng(s))[0][0, 0]) for s in range(10)}
    assert len(corners) > 5 and any(len(set(rgb)) > 1 for rgb in corners), "backgrounds are drawn in colour"


def test_each_character_is_inked_as_the_package_inks_it():
    """classic draws each glyph once and reuses it; the package draws it at every offset: same pixels."""
    generator = ClassicScheme()._generator
    measure = ImageDraw.Draw(Image.new("RGB", (160, 60)))
    for font in generator.truefonts:
        for c in DEFAULT_ALPHABET + " ":
            _, _, w, h = measure.multiline_textbbox((1, 1), c, font=font)
            for dx1 in range(5):
                for dy1 in range(7):
                    for color in ((10, 200, 97, 220), (200, 10, 10, 238), (123, 45, 167, 255)):
                        theirs = Image.new("RGBA", (int(w) + dx1, int(h) + dy1))
                        ImageDraw.Draw(theirs).text((dx1, dy1), c, font=font, fill=color)
                        theirs = theirs.crop(theirs.getbbox())
                        ours = generator.inked(font, c, color, dx1, dy1)
                        assert ours.size == theirs.size and ours.tobytes() == theirs.tobytes(), (font.size, c, dx1, dy1)


def test_classic_grey_is_the_luminance_of_classic_with_its_mask():
    """The grey `classic` platforms served before colour: PIL's convert("L") of the same draw, same glyph mask."""
    colour, grey = get_scheme("classic"), get_scheme("classic_grey")
    assert grey.mode == "L" and (grey.width, grey.height, grey.lengths) == (colour.width, colour.height, colour.lengths)
    image, mask = colour.draw("AB12", np.random.default_rng(5))
    grey_image, grey_mask = grey.draw("AB12", np.random.default_rng(5))
    assert grey_image.shape == (60, 160) and grey_image.dtype == np.uint8
    assert np.array_equal(grey_image, np.asarray(Image.fromarray(image).convert("L")))
    assert np.array_equal(grey_mask, mask)
