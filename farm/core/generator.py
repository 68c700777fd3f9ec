"""A trained perturbation generator: one forward pass per captcha instead of an iterative attack's gradient steps.

Generative attacks (CDA, Naseer et al. 2019; TTP, Naseer et al. 2021; LTP, Salzmann et al. 2021)
train one network against substitutes once; afterwards a perturbation costs a forward pass.
This one reads the grey captcha, its glyph mask and a random code (a noise map drawn from each
captcha's own seed, so no two captchas of a pool share a perturbation), and its output is
squashed into exactly the default's budgets and mask: `budget * tanh(gain * standardised(blur(raw)))` where the
attack may act, the per-pixel two-level L-inf budget of farm.core.masks.glyph_budget. The fixed
Gaussian on the raw output plays the part of the default's smoothed gradients (low frequencies
transfer). A generator may also place dots in the glyphs' tone on their edges, as the `edge` method
does (what a bot's threshold keeps): its dot placer, a small network of its own distilled from edge's
gradient placement, scores each place a dot may go. A centred generator then takes away the part every
captcha shares (the batch's mean in training, its running estimate afterwards, as batch normalisation
does): a pattern common to a pool is what an attacker estimates from many captchas and subtracts, so
it must not be what fools.
A colour generator (`channels` 3, trained on a colour scheme through the grey conversions bots use)
reads and perturbs each channel; a grey one reads a colour captcha in the solvers' BT.601 grey and
adds its perturbation to each channel alike (which a bot reading HSV saturation does not see).
No I/O here: training is farm.ops.generator_training; the registry stores a generator beside the
substitute it was trained against, and the `generator` attack method runs it.

Shape: images, glyphs, budget, allowed (B, 1, H, W) float; codes (B, code_channels, H/4, W/4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from farm.core.checkpoint import sha256_hex
from farm.core.model import to_arrays, to_grey, to_planes, to_tensor
from farm.core.preprocess import blur
from farm.exceptions import CheckpointError, SettingError

__all__ = ["GeneratorConfig", "PerturbationGenerator", "draw_codes", "perturb_captchas", "generator_bytes",
           "generator_card", "load_generator", "GENERATOR_FORMAT"]

GENERATOR_FORMAT = "captchafarm-generator/1"


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator. Small on purpose: its forward pass must cost about as much as rendering."""

    width: int = 32  # channels at 1/4 resolution, where the blocks run (15x40 for a 60x160 captcha)
    blocks: int = 2  # residual blocks at 1/4 resolution: their receptive field spans a glyph or two
    code_channels: int = 4  # noise channels of the code, joined at 1/4 resolution
    smoothing: float = 2.0  # sigma (full-resolution pixels) of the fixed Gaussian on the raw output: the default's
    gain: float = 2.0  # tanh(gain * standardised output): about 80% of the budget used on average, and no pixel
    # so saturated that it stops learning
    channels: int = 1  # 1: grey in, grey out; 3: colour in, a perturbation per channel out
    dots: int = 0  # dots its placer learned to place (edge's, distilled); 0: no placer
    dot_width: float = 3.5  # the dots' diameter, and how far off the glyphs their centres lie: edge's defaults
    band: int = 2
    placer_width: int = 12  # channels of the dot placer
    centred: bool = False  # take away the pool's shared pattern (its running mean, kept at `centre_shape`)
    centre_shape: tuple[int, int] = (30, 80)  # half a 60x160 captcha: the smoothed output holds no finer detail
    centre_momentum: float = 0.02  # weight of each training batch in the running mean

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise CheckpointError(f"card: unknown generator config fields {sorted(unknown)}")
        if "centre_shape" in data:  # JSON holds it as a list
            data = {**data, "centre_shape": tuple(data["centre_shape"])}
        return cls(**data)


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return F.relu(x + self.body(x))


class _DotPlacer(nn.Module):
    """[grey, glyphs, where a dot's centre may lie] -> a dot's logit at each pixel (B, 1, H, W).

    At half resolution, with dilated convolutions: its view spans a glyph or two, as the strokes a dot may join.
    Channels last: CPU kernels run dilated convolutions about half again as fast in that layout.
    """

    def __init__(self, width: int):
        super().__init__()
        layers, inputs = [], 3
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(inputs, width, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
            inputs = width
        self.net = nn.Sequential(*layers, nn.Conv2d(width, 1, 1)).to(memory_format=torch.channels_last)

    def forward(self, grey: torch.Tensor, glyphs: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.cat([grey * 2 - 1, glyphs * 2 - 1, centres * 2 - 1], 1), 2)
        logits = self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return F.interpolate(logits, size=grey.shape[-2:], mode="bilinear", align_corners=False)


class PerturbationGenerator(nn.Module):
    """(image, glyph mask, code) -> perturbation within the budget, zero where the mask forbids.

    No normalisation layers: a captcha's perturbation depends on it and its code alone, never on the
    other captchas of its batch.
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config = config or GeneratorConfig()
        w = config.width
        c = config.channels
        self.down1 = nn.Sequential(nn.Conv2d(c + 1, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))  # (H/2, W/2)
        self.down2 = nn.Sequential(nn.Conv2d(16, w, 3, stride=2, padding=1), nn.ReLU(inplace=True))  # (H/4, W/4)
        self.join = nn.Sequential(nn.Conv2d(w + config.code_channels, w, 1), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_Residual(w) for _ in range(config.blocks)])
        self.up = nn.Conv2d(w, 16, 3, padding=1)
        self.out = nn.Conv2d(16, c, 3, padding=1)  # at (H/2, W/2), with the first block's features: glyph edges
        if config.centred:  # the running mean of the bounded output, in budget units; saved with the weights
            self.register_buffer("centre", torch.zeros(1, c, *config.centre_shape))
        if config.dots:
            self.placer = _DotPlacer(config.placer_width)

    def raw(self, images: torch.Tensor, glyphs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Unbounded, smoothed output (B, channels, H, W) before squashing.

        Computed at half resolution and smoothed there with half the sigma, then brought to full
        size: the Gaussian leaves nothing a half-resolution map cannot hold, at a quarter of the cost.
        """
        inputs = torch.cat([images * 2 - 1, glyphs * 2 - 1], 1)  # (B, channels + 1, H, W)
        half = self.down1(inputs)  # (B, 16, H/2, W/2)
        x = self.down2(half)  # (B, width, H/4, W/4)
        codes = F.interpolate(codes, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = self.blocks(self.join(torch.cat([x, codes], 1)))
        x = F.interpolate(self.up(x), size=half.shape[-2:], mode="bilinear", align_corners=False)
        x = self.out(F.relu(x + half))  # (B, channels, H/2, W/2)
        if self.config.smoothing > 0:
            x = blur(x, self.config.smoothing / 2)
        return F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, channels, H, W)

    def forward(self, images: torch.Tensor, glyphs: torch.Tensor, codes: torch.Tensor, budget: torch.Tensor,
                allowed: torch.Tensor) -> torch.Tensor:
        """The perturbation (B, channels, H, W): |delta| <= budget everywhere, 0 where `allowed` is 0.

        images: (B, channels, H, W), as the generator reads them (`perturb` converts).
        """
        raw = self.raw(images, glyphs, codes)
        # standardised per captcha: no uniform shift (a pattern shared by every captcha, and a quick dead end where
        # the whole image saturates at one sign) and a fixed contrast, so training learns the pattern, not its size
        mean, std = raw.mean((2, 3), keepdim=True), raw.std((2, 3), keepdim=True)
        unit = torch.tanh(self.config.gain * (raw - mean) / (std + 1e-6))  # (B, channels, H, W) in (-1, 1)
        if self.config.centred:
            unit = self._centre(unit)
        return unit * budget * allowed

    def _centre(self, unit: torch.Tensor) -> torch.Tensor:
        """`unit` less the pool's shared pattern, still in [-1, 1]: training takes the batch's mean (so the gradient
        sees it go) and updates the running one; a trained generator takes the running one, so that a captcha's
        perturbation never depends on its batch."""
        size = unit.shape[-2:]
        if self.training:
            shared = unit.mean(0, keepdim=True)
            with torch.no_grad():
                m = self.config.centre_momentum
                self.centre.mul_(1 - m).add_(m * F.interpolate(shared, size=self.centre.shape[-2:], mode="area"))
        else:
            shared = F.interpolate(self.centre, size=size, mode="bilinear", align_corners=False)
        return ((unit - shared) / (1 + shared.abs())).clamp(-1, 1)  # |unit - shared| <= 1 + |shared|

    def dot_logits(self, images: torch.Tensor, glyphs: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W): how likely edge's placement would ink each pixel (the placer's logits).

        images (B, 1 or 3, H, W), read in BT.601 grey; centres: where a dot's centre may lie
        (farm.core.attacks.edge.edge_zones with the config's band and dot width).
        """
        if not self.config.dots:
            raise SettingError("dots: this generator has no dot placer; train one that places dots "
                               "(`farm generator train --dots N`), or give --dots 0")
        return self.placer(to_grey(images), glyphs.float(), centres.float())

    def perturb(self, images: torch.Tensor, glyphs: torch.Tensor, codes: torch.Tensor, budget: torch.Tensor,
                allowed: torch.Tensor) -> torch.Tensor:
        """Adversarial images in [0, 1] (not yet rounded to 8 bits), as an attack returns them.

        images (B, 1 or 3, H, W): a grey generator reads colour in BT.601 grey and moves each channel alike; a colour
        one needs colour.
        """
        if self.config.channels == 3 and images.shape[1] != 3:
            raise SettingError("images: this generator was trained on colour captchas and these are grey; train one "
                               "on their scheme (`farm generator train --scheme`)")
        seen = to_grey(images) if self.config.channels == 1 else images
        return (images + self(seen, glyphs, codes, budget, allowed)).clamp(0, 1)


def draw_codes(seeds: list[int], shape: tuple[int, int], channels: int) -> torch.Tensor:
    """(B, channels, H/4, W/4) standard normal codes, each drawn from its captcha's own seed.

    One generator per captcha: a captcha's code does not depend on which batch it is in.
    """
    h, w = -(-shape[0] // 4), -(-shape[1] // 4)
    if not seeds:
        return torch.empty(0, channels, h, w)
    return torch.stack([torch.randn(channels, h, w, generator=torch.Generator().manual_seed(int(s) % 2**64))
                        for s in seeds])


@torch.no_grad()
def perturb_captchas(model: PerturbationGenerator, images: np.ndarray, glyphs: np.ndarray, allowed: np.ndarray,
                     budget: np.ndarray, seeds: list[int], batch_size: int = 256) -> np.ndarray:
    """Adversarial captchas as uint8 shaped as `images`, one forward pass each, as a pool's shard would write them.

    images uint8 (N, H, W) or (N, H, W, 3); glyphs and allowed bool (N, H, W); budget (N, H, W) per-pixel L-inf
    radius (farm.core.masks.glyph_budget); seeds: each captcha's own seed, from which its code is drawn.
    """
    if not len(images) == len(glyphs) == len(allowed) == len(budget) == len(seeds):
        raise ValueError(f"images: {len(images)} captchas but {len(glyphs)} glyph masks, {len(allowed)} masks, "
                         f"{len(budget)} budgets and {len(seeds)} seeds")
    model.eval()
    as_tensor = lambda a: to_planes(a).float()  # noqa: E731
    out = []
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        x = to_tensor(list(images[sl]))
        codes = draw_codes(seeds[sl], x.shape[-2:], model.config.code_channels)
        adv = model.perturb(x, as_tensor(glyphs[sl]), codes, as_tensor(budget[sl]), as_tensor(allowed[sl]))
        out.append(to_arrays(adv))  # the 8-bit grid
    return np.concatenate(out) if out else np.asarray(images).copy()


def generator_bytes(model: PerturbationGenerator) -> bytes:
    """The weights as safetensors (never pickle)."""
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})


def generator_card(model: PerturbationGenerator, weights: bytes, **extra) -> dict:
    """What a generator's weights need beside them: its config and the sha256 they must match."""
    return {"format": GENERATOR_FORMAT, "config": model.config.to_dict(), "sha256": sha256_hex(weights), **extra}


def load_generator(weights: bytes, card: dict) -> PerturbationGenerator:
    """Verify (format, sha256) and build; CheckpointError naming the check that failed."""
    if not isinstance(card, dict) or card.get("format") != GENERATOR_FORMAT:
        found = card.get("format") if isinstance(card, dict) else None
        raise CheckpointError(f"card: not a generator card (format {found!r}, expected {GENERATOR_FORMAT!r})")
    if sha256_hex(weights) != card.get("sha256"):
        raise CheckpointError("weights: sha256 does not match the generator card's; the file is corrupt "
                              "or belongs to another card")
    try:
        state = load_safetensors(weights)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"weights: not a readable safetensors file ({e})") from e
    model = PerturbationGenerator(GeneratorConfig.from_dict(card.get("config", {})))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights: do not fit the card's generator config ({str(e).splitlines()[0]})") from e
    return model.eval()
