"""The operations of an attacker's clean-up, as tensor functions on (B, 1, H, W) floats in [0, 1].

Two kinds: the real operations evaluation applies (PIL's JPEG codec, exact thresholds,
scikit-image's Sauvola, adaptive threshold and total-variation denoising), and differentiable
stand-ins an attack differentiates through (kornia's JPEG codec, sigmoid thresholds with a
straight-through value, an unrolled Chambolle iteration). Median, blur, bilateral filtering,
morphology and rescaling (kornia, torch) are differentiable as they are and serve both.
`chains` pairs the two kinds step by step.

The first functions (median, blur, jpeg, otsu, binarize, rescale, shift) are what the `robust`
attack samples: forward the real operation, backward straight-through where it has no gradient.
"""

from __future__ import annotations

import io

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.filters import threshold_local, threshold_sauvola
from skimage.restoration import denoise_tv_chambolle

__all__ = ["median", "blur", "jpeg", "otsu", "binarize", "rescale", "shift", "straight_through", "to_levels",
           "soft_threshold", "jpeg_real", "jpeg_differentiable", "adaptive_real", "adaptive_differentiable",
           "sauvola_real", "sauvola_differentiable", "tv_real", "tv_differentiable", "bits", "opening", "closing",
           "bilateral", "otsu_separation"]

SOFTNESS = 0.05  # width of the sigmoid a threshold's gradient comes from: about 13 grey levels
ADAPTIVE_OFFSET = 5 / 255  # OpenCV's adaptiveThreshold C as bots set it: how far below its surroundings ink is
SAUVOLA_K, SAUVOLA_R = 0.2, 0.5  # Sauvola's own k; R half the range (128 of 255), as for 8-bit images
TV_ITERATIONS = 15  # scikit-image's stopping rule ends about here on captchas: the closest fixed count (0.003 mean)
BILATERAL_COLOUR, BILATERAL_SPACE = 0.1, 1.5  # sigmas: about 25 grey levels, a 5x5 window's worth of space


def straight_through(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Value of `forward`, gradient of identity."""
    return x + (forward - x).detach()


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit grey levels 0-255 (long) an image is made of."""
    return x.detach().clamp(0, 1).mul(255).round().long()


def _per_image(x: torch.Tensor, operation) -> torch.Tensor:
    """Apply a numpy (H, W) float64 -> (H, W) operation to each image of a batch, without gradient."""
    images = x.detach().cpu().double().numpy()[:, 0]
    out = np.stack([operation(image) for image in images])
    return torch.from_numpy(out).unsqueeze(1).to(x.device, x.dtype)


def median(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Median filter, replicated borders (gradient flows to the median pixel of each window)."""
    return kornia.filters.median_blur(x, size, border_type="replicate")


def blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur over 3 sigma each side, replicated borders."""
    radius = max(1, round(3 * sigma))
    return kornia.filters.gaussian_blur2d(x, 2 * radius + 1, (sigma, sigma), border_type="replicate")


def jpeg_real(x: torch.Tensor, quality: int = 50) -> torch.Tensor:
    """A real JPEG round trip through PIL's codec (no gradient)."""
    out = []
    for image in to_levels(x).to(torch.uint8).cpu().numpy():
        buffer = io.BytesIO()
        Image.fromarray(image[0]).save(buffer, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buffer), dtype=np.uint8))
    return torch.from_numpy(np.stack(out)).unsqueeze(1).to(x.device, x.dtype) / 255.0


def jpeg(x: torch.Tensor, quality: int = 50) -> torch.Tensor:
    """A real JPEG round trip (PIL), straight-through gradient."""
    return straight_through(x, jpeg_real(x, quality))


def jpeg_differentiable(x: torch.Tensor, quality: int = 50) -> torch.Tensor:
    """kornia's differentiable JPEG codec (Reich et al. 2024), grey in, grey out."""
    rgb = x.expand(-1, 3, -1, -1)  # (B, 1, H, W) -> (B, 3, H, W): no chroma, as a grey JPEG
    quality = torch.tensor([float(quality)], device=x.device)
    return kornia.enhance.jpeg_codec_differentiable(rgb, quality).mean(1, keepdim=True)


def _between_class_variance(x: torch.Tensor) -> torch.Tensor:
    """Otsu's between-class variance (in grey levels squared) of each threshold 0-255. (B, 1, H, W) -> (B, 256)."""
    levels = to_levels(x).flatten(1)
    hist = torch.zeros(levels.shape[0], 256, device=x.device).scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float))
    p = hist / hist.sum(1, keepdim=True)
    omega = p.cumsum(1)
    mu = (p * torch.arange(256, device=x.device)).cumsum(1)
    return (mu[:, -1:] * omega - mu) ** 2 / (omega * (1 - omega)).clamp_min(1e-12)


def otsu(x: torch.Tensor) -> torch.Tensor:
    """Otsu threshold per image on its 8-bit histogram. (B, 1, H, W) -> (B, 1, 1, 1)."""
    return (_between_class_variance(x).argmax(1).float() / 255.0).view(-1, 1, 1, 1).to(x.dtype)


def otsu_separation(x: torch.Tensor) -> torch.Tensor:
    """How well Otsu's threshold splits each image in two: its between-class variance. (B, 1, H, W) -> (B,)."""
    return _between_class_variance(x).amax(1)


def soft_threshold(x: torch.Tensor, threshold: torch.Tensor | float, softness: float = SOFTNESS) -> torch.Tensor:
    """1 above the threshold, 0 at or below it; gradient of a sigmoid around it (through both arguments)."""
    soft = torch.sigmoid((x - threshold) / softness)
    hard = (x > threshold).to(x.dtype)
    return soft + (hard - soft).detach()


def binarize(x: torch.Tensor, softness: float = SOFTNESS) -> torch.Tensor:
    """Otsu binarisation; gradient of a sigmoid around the threshold."""
    return soft_threshold(x, otsu(x), softness)


def adaptive_real(x: torch.Tensor, block: int = 15) -> torch.Tensor:
    """Local Gaussian-mean threshold (scikit-image's threshold_local, OpenCV's ADAPTIVE_THRESH_GAUSSIAN_C)."""
    return _per_image(x, lambda image: (image > threshold_local(image, block, "gaussian", offset=ADAPTIVE_OFFSET))
                      .astype(np.float64))


def adaptive_differentiable(x: torch.Tensor, block: int = 15) -> torch.Tensor:
    """The same threshold from kornia's Gaussian (sigma (block - 1) / 6, as scikit-image), sigmoid gradient."""
    sigma = (block - 1) / 6
    radius = int(4 * sigma + 0.5)  # scipy's truncate=4
    local = kornia.filters.gaussian_blur2d(x, 2 * radius + 1, (sigma, sigma), border_type="reflect")
    return soft_threshold(x, local - ADAPTIVE_OFFSET)


def sauvola_real(x: torch.Tensor, window: int = 15) -> torch.Tensor:
    """Sauvola's threshold m (1 + k (s / R - 1)) over a window (scikit-image's threshold_sauvola)."""
    return _per_image(x, lambda image: (image > threshold_sauvola(image, window, SAUVOLA_K, SAUVOLA_R))
                      .astype(np.float64))


def sauvola_differentiable(x: torch.Tensor, window: int = 15) -> torch.Tensor:
    """The same threshold from box filters (kornia has none of its own), sigmoid gradient."""
    mean = kornia.filters.box_blur(x, window, border_type="reflect")
    std = (kornia.filters.box_blur(x * x, window, border_type="reflect") - mean ** 2).clamp_min(1e-8).sqrt()
    return soft_threshold(x, mean * (1 + SAUVOLA_K * (std / SAUVOLA_R - 1)))


def tv_real(x: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (scikit-image's Chambolle 2004, its own stopping rule)."""
    return _per_image(x, lambda image: denoise_tv_chambolle(image, weight=weight))


def tv_differentiable(x: torch.Tensor, weight: float = 0.1, iterations: int = TV_ITERATIONS) -> torch.Tensor:
    """Chambolle's projection iterations as scikit-image runs them, unrolled a fixed number of times."""
    tau = 0.25  # 1 / (2 * ndim)
    p_rows, p_cols = torch.zeros_like(x), torch.zeros_like(x)  # the dual field, one per axis
    out = x
    for i in range(iterations):
        if i:  # out = x - div(p), with div as scikit-image's backward differences
            out = (x - p_rows - p_cols + F.pad(p_rows[..., :-1, :], (0, 0, 1, 0))
                   + F.pad(p_cols[..., :, :-1], (1, 0, 0, 0)))
        g_rows = F.pad(out.diff(dim=-2), (0, 0, 0, 1))
        g_cols = F.pad(out.diff(dim=-1), (0, 1, 0, 0))
        norm = 1 + (g_rows ** 2 + g_cols ** 2 + 1e-12).sqrt() * tau / weight
        p_rows, p_cols = (p_rows - tau * g_rows) / norm, (p_cols - tau * g_cols) / norm
    return out


def bits(x: torch.Tensor, depth: int = 3) -> torch.Tensor:
    """Bit-depth reduction to 2**depth grey levels (feature squeezing, Xu et al. 2018), straight-through."""
    top = 2 ** depth - 1
    return straight_through(x, to_levels(x).div(255).mul(top).round().div(top).to(x.dtype))


def opening(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey opening by a size x size square: removes light specks smaller than it (OpenCV's borders)."""
    return kornia.morphology.opening(x, torch.ones(size, size, device=x.device))


def closing(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey closing by a size x size square: fills dark specks and holes smaller than it."""
    return kornia.morphology.closing(x, torch.ones(size, size, device=x.device))


def bilateral(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Edge-preserving bilateral filter, the denoiser OpenCV bots reach for.

    kornia's follows OpenCV's weighting (a Gaussian of the grey difference times one of the
    distance); scikit-image's weighs differently, so this one serves evaluation too.
    """
    return kornia.filters.bilateral_blur(x, size, BILATERAL_COLOUR, (BILATERAL_SPACE, BILATERAL_SPACE),
                                         border_type="replicate")


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
