"""What every captcha scheme is: a seeded renderer of text to an image (grey or colour) and its glyph mask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from farm.core.charset import Charset, DEFAULT_ALPHABET
from farm.exceptions import SchemeError

__all__ = ["Captcha", "Scheme", "captcha_seed"]


@dataclass(frozen=True)
class Captcha:
    """One rendered captcha. Shape: image uint8 (H, W) grey or (H, W, 3) RGB, mask (H, W) bool, True on glyph pixels."""

    text: str
    image: np.ndarray
    mask: np.ndarray


def captcha_seed(base_seed: int, index: int, stream: int = 0) -> int:
    """The seed of captcha `index` of a run; stable everywhere, independent across indices and streams."""
    return int(np.random.SeedSequence([base_seed, stream, index]).generate_state(1, np.uint64)[0])


class Scheme(ABC):
    """A captcha family. Subclasses set the class attributes and implement `draw`.

    Rendering is a pure function of (text, seed): randomness only ever comes from the
    numpy Generator handed to `draw`, so the same seed gives identical bytes in any process.
    """

    name: ClassVar[str]
    width: ClassVar[int]
    height: ClassVar[int]
    alphabet: ClassVar[str] = DEFAULT_ALPHABET
    lengths: ClassVar[tuple[int, int]] = (4, 6)
    description: ClassVar[str] = ""
    mode: ClassVar[str] = "L"  # what `draw` returns: "L" grey (H, W) or "RGB" colour (H, W, 3), as PIL names them

    @property
    def charset(self) -> Charset:
        return Charset(self.alphabet, *self.lengths)

    def random_text(self, rng: np.random.Generator) -> str:
        length = int(rng.integers(self.lengths[0], self.lengths[1] + 1))
        return "".join(self.alphabet[i] for i in rng.integers(0, len(self.alphabet), length))

    def render(self, text: str, seed: int) -> Captcha:
        """Render `text`; raises ValueError naming a character outside the alphabet.

        SchemeError when `draw` breaks its contract (a plugin's bug, so it names the scheme).
        """
        self.charset.validate(text)
        image, mask = self.draw(text, np.random.default_rng(seed))
        expected = (self.height, self.width)
        pixels = expected + ((3,) if self.mode == "RGB" else ())
        if image.shape != pixels or mask.shape != expected or image.dtype != np.uint8 or mask.dtype != bool:
            raise SchemeError(f"scheme {self.name!r} ({type(self).__module__}.{type(self).__qualname__}): draw "
                              f"returned image {image.dtype} {image.shape} and mask {mask.dtype} {mask.shape}; "
                              f"expected uint8 and bool of (height, width) = {expected}"
                              f"{', the image with 3 channels (mode RGB)' if self.mode == 'RGB' else ''}")
        return Captcha(text, image, mask)

    def sample(self, seed: int) -> Captcha:
        """A captcha with random text, both drawn from `seed`."""
        text = self.random_text(np.random.default_rng([seed, 1]))
        return self.render(text, seed)

    def shapes(self, text: str, seed: int) -> np.ndarray | None:
        """Each character of `text` as `render(text, seed)` draws it, drawn as every character of the alphabet in its
        pose and place: (len(text), len(alphabet), H, W) bool; None where the scheme cannot (then a warp cannot
        check that a glyph stays nearest its own character, farm.core.identity). A scheme need not implement it."""
        return None

    @abstractmethod
    def draw(self, text: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (image uint8 (H, W), or (H, W, 3) for mode "RGB"; glyph mask bool (H, W))."""
