"""Colour to grey as bots do it before their clean-up: (B, 3, H, W) RGB floats in [0, 1] -> (B, 1, H, W).

Each conversion has a real operation on 8-bit levels, rounded as the library a bot calls rounds
(PIL's convert("L") fixed point for BT.601, PIL's convert("HSV") for saturation and value), and a
differentiable stand-in: the same formula on floats, unrounded (at most half a level away; a
level for saturation, which PIL truncates).
Ink comes out dark, as on grey captchas, whichever the conversion: luma, mean and value (HSV's V,
the largest channel) keep dark glyphs dark; saturation is given inverted, 1 - S, since a colour
captcha's glyphs are its saturated part on a pale background, so `saturation>otsu` is a bot's
HSV threshold with ink black. A grey image (B, 1, H, W) has no colour to convert: every
conversion returns it unchanged (not, say, a white image for saturation), so a chain written for
colour pools runs on grey ones as it would after any conversion of a grey picture.
"""

from __future__ import annotations

import torch

from farm.core.colour import GREY, PIL_BT601
from farm.core.model import to_grey
from farm.core.preprocess.ops import otsu_separation, to_levels
from farm.exceptions import SettingError

__all__ = ["is_colour", "most_contrast_channel", "grey601_real", "grey709_real", "mean_real",
           "channel_real", "saturation_real", "value_real", "grey601", "grey709", "mean", "channel", "saturation",
           "value"]
SATURATION_FLOOR = 1 / 255  # the stand-in's smallest divisor: the real S is 0 below one level of V


def is_colour(x: torch.Tensor) -> bool:
    """True for (B, 3, H, W) RGB, False for (B, 1, H, W) grey; SettingError for any other channel count."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise SettingError(f"images: shape {tuple(x.shape)}; the toolbox reads (B, 1, H, W) grey or "
                           f"(B, 3, H, W) RGB floats in [0, 1]")
    return x.shape[1] == 3


def _grey(levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, H, W) levels 0-255 -> (B, 1, H, W) floats of `like`'s dtype."""
    return levels.unsqueeze(1).to(like.dtype) / 255


def grey601_real(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma exactly as PIL's Image.convert("L"): (R 19595 + G 38470 + B 7471 + 2**15) >> 16."""
    if not is_colour(x):
        return x
    r, g, b = to_levels(x).unbind(1)
    return _grey((r * PIL_BT601[0] + g * PIL_BT601[1] + b * PIL_BT601[2] + 2 ** 15) >> 16, x)


def grey709_real(x: torch.Tensor) -> torch.Tensor:
    """BT.709 luma on 8-bit levels, halves rounded up as a fixed-point converter does."""
    if not is_colour(x):
        return x
    weights = torch.tensor(GREY["bt709"], dtype=torch.double, device=x.device).view(1, 3, 1, 1)
    luma = (to_levels(x).double() * weights).sum(1)
    return _grey((luma + 0.5).floor().long(), x)


def mean_real(x: torch.Tensor) -> torch.Tensor:
    """The channels' mean on 8-bit levels, halves rounded up ((R + G + B + 1) // 3: a third never ties)."""
    if not is_colour(x):
        return x
    return _grey((to_levels(x).sum(1) + 1) // 3, x)


def most_contrast_channel(x: torch.Tensor) -> torch.Tensor:
    """Per image, the channel Otsu's threshold splits best (largest between-class variance); R first on a tie.

    Between-class variance rather than the standard deviation: it is what the threshold that
    usually follows makes of the channel (ink against background), while noise, such as a
    perturbation, raises a channel's deviation without separating anything. (B, 3, H, W) -> (B,) long.
    """
    b, c, h, w = x.shape
    return otsu_separation(x.detach().reshape(b * c, 1, h, w)).view(b, c).argmax(1)  # argmax: the first of equals


def _pick(x: torch.Tensor) -> torch.Tensor:
    index = most_contrast_channel(x).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
    return x.gather(1, index)


def channel_real(x: torch.Tensor) -> torch.Tensor:
    """The single channel with the most contrast, per image, on 8-bit levels."""
    if not is_colour(x):
        return x
    return _pick(to_levels(x).to(x.dtype) / 255)


def channel(x: torch.Tensor) -> torch.Tensor:
    """The same channel (chosen without gradient), its values differentiable."""
    return _pick(x) if is_colour(x) else x


def value_real(x: torch.Tensor) -> torch.Tensor:
    """HSV's V: the largest channel, as PIL's convert("HSV")."""
    if not is_colour(x):
        return x
    return _grey(to_levels(x).amax(1), x)


def saturation_real(x: torch.Tensor) -> torch.Tensor:
    """255 - HSV's S, S as PIL's convert("HSV") gives it: floor(255 (max - min) / max), 0 where max is 0."""
    if not is_colour(x):
        return x
    rgb = to_levels(x)
    high, low = rgb.amax(1), rgb.amin(1)
    return _grey(255 - (high - low) * 255 // high.clamp_min(1), x)


def grey601(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma, unrounded: how every solver reads colour (farm.core.model.to_grey)."""
    return to_grey(x, "bt601") if is_colour(x) else x


def grey709(x: torch.Tensor) -> torch.Tensor:
    """BT.709 luma, unrounded."""
    return to_grey(x, "bt709") if is_colour(x) else x


def mean(x: torch.Tensor) -> torch.Tensor:
    """The channels' mean, unrounded."""
    return to_grey(x, "mean") if is_colour(x) else x


def value(x: torch.Tensor) -> torch.Tensor:
    """The largest channel (gradient to it, shared among equals)."""
    return x.amax(1, keepdim=True) if is_colour(x) else x


def saturation(x: torch.Tensor) -> torch.Tensor:
    """1 - (max - min) / max, unrounded."""
    if not is_colour(x):
        return x
    high, low = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    return 1 - (high - low) / high.clamp_min(SATURATION_FLOOR)
