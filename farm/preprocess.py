"""What attackers do to a captcha before solving it, as tensor functions usable in an attack's graph.

Forward passes are the real operations (a real JPEG codec, a real Otsu threshold); where an
operation has no useful gradient its backward is a straight-through estimate (BPDA), so the
`robust` attack can differentiate through them and evaluation can apply them exactly.
Every function maps (B, 1, H, W) floats in [0, 1] to the same shape.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["median", "blur", "jpeg", "otsu", "binarize", "rescale", "shift", "PREPROCESSING", "apply"]


def _straight_through(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Value of `forward`, gradient of identity."""
    return x + (forward - x).detach()


def median(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Median filter (gradient flows to the median pixel of each window)."""
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)  # (B, 1, H, W, k, k)
    return patches.reshape(*x.shape, size * size).median(dim=-1).values


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur with replicated borders."""
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r = len(k) // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def jpeg(x: torch.Tensor, quality: int = 50) -> torch.Tensor:
    """A real JPEG round trip (PIL), straight-through gradient."""
    out = []
    for image in (x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image[0]).save(buffer, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buffer), dtype=np.uint8))
    decoded = torch.from_numpy(np.stack(out)).unsqueeze(1).to(x.device, x.dtype) / 255.0
    return _straight_through(x, decoded)


def otsu(x: torch.Tensor) -> torch.Tensor:
    """Otsu threshold per image. (B, 1, H, W) -> (B, 1, 1, 1)."""
    levels = x.detach().clamp(0, 1).mul(255).round().long().flatten(1)
    hist = torch.zeros(levels.shape[0], 256, device=x.device).scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float))
    p = hist / hist.sum(1, keepdim=True)
    omega = p.cumsum(1)
    mu = (p * torch.arange(256, device=x.device)).cumsum(1)
    between = (mu[:, -1:] * omega - mu) ** 2 / (omega * (1 - omega)).clamp_min(1e-12)
    return (between.argmax(1).float() / 255.0).view(-1, 1, 1, 1).to(x.dtype)


def binarize(x: torch.Tensor, softness: float = 0.05) -> torch.Tensor:
    """Otsu binarisation; gradient of a sigmoid around the threshold."""
    threshold = otsu(x)
    soft = torch.sigmoid((x - threshold) / softness)
    hard = (x > threshold).to(x.dtype)
    return soft + (hard - soft).detach()


def rescale(x: torch.Tensor, factor: float = 0.5) -> torch.Tensor:
    """Downscale then upscale back (bilinear, antialiased): what a solver with small input does."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))),
                          mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def shift(x: torch.Tensor, dx: int = 1, dy: int = 1) -> torch.Tensor:
    """Translate by whole pixels, replicating borders."""
    pad = max(abs(dx), abs(dy), 1)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    h, w = x.shape[-2:]
    return padded[..., pad - dy:pad - dy + h, pad - dx:pad - dx + w]


# the attacker preprocessings evaluation reports, with the settings it uses
PREPROCESSING = {
    "median3": lambda x: median(x, 3),
    "blur": lambda x: blur(x, 1.0),
    "jpeg50": lambda x: jpeg(x, 50),
    "binarize": binarize,
    "rescale": lambda x: rescale(x, 0.5),
}


def apply(name: str, x: torch.Tensor) -> torch.Tensor:
    """Apply a named preprocessing ('none' returns x)."""
    if name == "none":
        return x
    if name not in PREPROCESSING:
        raise ValueError(f"preprocessing: unknown {name!r}; known: none, {', '.join(PREPROCESSING)}")
    return PREPROCESSING[name](x)
