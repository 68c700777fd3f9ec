"""Schemes render deterministically, mark their glyphs, and refuse labels outside the alphabet."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from farm.core.charset import Charset
from farm.core.colour import grey_array
from farm.core.schemes import BUILT_IN, captcha_seed, get_scheme, scheme_names, scheme_source

SCHEMES = [n for n in scheme_names() if scheme_source(n) == BUILT_IN]  # plugins: tests/test_plugins.py


def test_at_least_three_schemes_including_classic():
    assert "classic" in SCHEMES and len(SCHEMES) >= 3


@pytest.mark.parametrize("name", SCHEMES)
def test_same_seed_gives_identical_bytes_and_other_seed_another_image(name):
    scheme = get_scheme(name)
    a, b, c = scheme.render("AB3D", 7), scheme.render("AB3D", 7), scheme.render("AB3D", 8)
    assert a.image.tobytes() == b.image.tobytes() and (a.mask == b.mask).all()
    assert a.image.tobytes() != c.image.tobytes()
    channels = (3,) if scheme.mode == "RGB" else ()
    assert a.image.dtype == np.uint8 and a.image.shape == (scheme.height, scheme.width, *channels)
    assert a.mask.dtype == bool and a.mask.shape == (scheme.height, scheme.width)


def test_renders_are_identical_in_another_process():
    code = ("import hashlib; from farm.core.schemes import get_scheme;"
            "print(hashlib.sha256(b''.join(get_scheme(n).sample(s).image.tobytes() "
            f"for n in {SCHEMES!r} for s in range(5))).hexdigest())")
    import hashlib
    here = hashlib.sha256(b"".join(get_scheme(n).sample(s).image.tobytes() for n in SCHEMES for s in range(5))).hexdigest()
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


@pytest.mark.parametrize("name", SCHEMES)
def test_glyph_mask_covers_the_text_and_nothing_far_from_it(name):
    scheme = get_scheme(name)
    for seed in range(20):
        c = scheme.sample(captcha_seed(1, seed))
        image, mask = grey_array(c.image).astype(float), c.mask  # colour: the ink's luminance
        assert mask.any(), "a captcha with text has glyph pixels"
        background = np.median(image[~binary_dilation(mask, iterations=3)])
        ink = np.abs(image - background)
        # pixels of the mask are inked: clearly apart from the background on average
        assert ink[mask].mean() > 40, f"{name} seed {seed}: mask pixels look like background"
        # the mask spans the text: several characters wide, not a fragment
        cols = np.flatnonzero(mask.any(0))
        assert cols[-1] - cols[0] > scheme.width * 0.35
        # nothing far from the ink: every mask pixel lies within 2 px of a clearly inked pixel
        assert not (mask & ~binary_dilation(ink > 25, iterations=2)).any()


def test_text_is_drawn_from_the_alphabet_and_length_range():
    for name in SCHEMES:
        scheme = get_scheme(name)
        for seed in range(50):
            text = scheme.sample(seed).text
            assert scheme.lengths[0] <= len(text) <= scheme.lengths[1]
            assert set(text) <= set(scheme.alphabet)


def test_invalid_labels_are_refused_naming_the_problem():
    charset = Charset()
    with pytest.raises(ValueError, match="empty"):
        charset.validate("")
    with pytest.raises(ValueError, match="'a'"):
        charset.validate("AB1a")
    with pytest.raises(ValueError, match="'!'"):
        get_scheme("classic").render("AB!D", 1)
    with pytest.raises(ValueError, match="4 to 4"):
        get_scheme("classic").render("ABCDE", 1)
    assert charset.encode("0A0A") == [1, 11, 1, 11]


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError, match="classic"):
        get_scheme("nope")


def test_case_rule_of_the_default_alphabet_ignores_case():
    assert Charset().normalize(" ab3d ") == "AB3D"
    assert Charset("abAB").normalize("aB") == "aB"
