"""Colour as the solvers read it: one fixed grey conversion, named in a solver's card.

Grey images are (H, W) uint8 arrays and (B, 1, H, W) tensors; colour ones (H, W, 3) RGB and
(B, 3, H, W). A solver reads a colour image by converting it to grey with its card's `grey`
conversion (ITU-R BT.601 unless the card says otherwise: what PIL's convert("L") computes), so
every solver reads every scheme and an attack's gradient flows through the conversion to each channel.
Torch-free: the tensor side (to_grey, to_tensor, to_arrays) is in farm.core.model.
"""

from __future__ import annotations

import numpy as np

from farm.exceptions import SettingError

__all__ = ["GREY", "DEFAULT_GREY", "PIL_BT601", "MODES", "check_grey", "check_mode", "grey_array"]

GREY = {
    "bt601": (0.299, 0.587, 0.114),  # ITU-R BT.601 luma: PIL's convert("L"), OpenCV's COLOR_RGB2GRAY
    "bt709": (0.2126, 0.7152, 0.0722),  # ITU-R BT.709 luma: HDTV, scikit-image's rgb2gray
    "mean": (1 / 3, 1 / 3, 1 / 3),  # the channel mean
}
DEFAULT_GREY = "bt601"
PIL_BT601 = (19595, 38470, 7471)  # PIL's BT.601 in 1/65536 (sum 65536), rounded by adding half: exact on uint8
MODES = ("L", "RGB")  # what a scheme draws: grey or colour (farm.core.schemes)


def check_grey(name: str) -> str:
    """`name` if it is a known conversion; else ValueError listing them."""
    if name not in GREY:
        raise ValueError(f"grey: unknown conversion {name!r}; known: {', '.join(GREY)}")
    return name


def check_mode(mode: str) -> str:
    """`mode` if it is a scheme's mode; else SettingError naming them."""
    if mode not in MODES:
        raise SettingError(f"mode: {mode!r} is not a scheme's mode; known: {', '.join(MODES)} (grey, colour)")
    return mode


def grey_array(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W) or (H, W, 3) image as uint8 (H, W) grey, exactly as PIL's convert("L")."""
    if image.ndim == 2:
        return image
    r, g, b = (image[..., c].astype(np.uint32) for c in range(3))
    return ((r * PIL_BT601[0] + g * PIL_BT601[1] + b * PIL_BT601[2] + 2 ** 15) >> 16).astype(np.uint8)

