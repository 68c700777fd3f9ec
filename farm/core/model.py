"""The CRNN solver: conv stack -> bidirectional GRU over image columns -> per-column classes, CTC blank 0.

Used as the substitute the attacks differentiate through, and (with other configs) as zoo solvers.
The model resizes its input itself, so any captcha size goes in and the resize is part of the
graph the attack's gradient flows through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from farm.core.charset import Charset
from farm.core.colour import DEFAULT_GREY, GREY, check_grey

__all__ = ["CRNNConfig", "CRNN", "greedy_decode", "ctc_loss", "to_tensor", "to_planes", "to_input_bytes",
           "resize_input", "model_input", "to_grey", "to_arrays"]


@dataclass(frozen=True)
class CRNNConfig:
    """Architecture of a CRNN. Defaults are sized to train to >95% on `classic` in minutes on 2 CPU cores."""

    num_classes: int = 37  # 36 characters + CTC blank
    input_height: int = 32  # 60 px captchas read fine at half size; halves the conv cost
    input_width: int = 96  # 24 columns after /4: room for 6 characters with CTC blanks between repeats
    channels: tuple[int, ...] = (16, 48, 96, 128)  # thin first block: full-size maps are memory-bound on CPU
    hidden: int = 128  # GRU width per direction
    dropout: float = 0.1
    grey: str = DEFAULT_GREY  # how it reads colour (farm.core.colour): recorded in the card with the rest

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CRNNConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)


def _block(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(pool))


class CRNN(nn.Module):
    """Shape: input (B, 1 or 3, H, W) floats in [0, 1], any H, W; output log-probs (T, B, num_classes)."""

    def __init__(self, config: CRNNConfig):
        super().__init__()
        self.config = config
        # the first two blocks halve both axes; later ones only height, keeping columns as time steps
        pools = [(2, 2), (2, 2)] + [(2, 1)] * (len(config.channels) - 2)
        blocks, c_in = [], 1
        for c_out, pool in zip(config.channels, pools):
            blocks.append(_block(c_in, c_out, pool))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        rows = config.input_height
        for ph, _ in pools:
            rows //= ph
        self.project = nn.Linear(c_in * rows, config.hidden)
        self.rnn = nn.GRU(config.hidden, config.hidden, bidirectional=True, batch_first=False)
        self.dropout = nn.Dropout(config.dropout)
        self.classify = nn.Linear(2 * config.hidden, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = model_input(images, self.config)
        x = self.features(images * 2 - 1)  # (B, C, h, T)
        b, c, h, t = x.shape
        x = x.permute(3, 0, 1, 2).reshape(t, b, c * h)  # (B, C, h, T) -> (T, B, C*h)
        x = F.relu(self.project(x))
        x, _ = self.rnn(x)  # (T, B, 2*hidden)
        return self.classify(self.dropout(x)).log_softmax(-1)  # (T, B, classes)

    def loss(self, output: torch.Tensor, labels: list[list[int]], reduction: str = "mean") -> torch.Tensor:
        return ctc_loss(output, labels, reduction)

    def decode(self, output: torch.Tensor, charset: Charset) -> list[str]:
        return greedy_decode(output, charset)


def model_input(images: torch.Tensor, config) -> torch.Tensor:
    """What every architecture reads: grey by the config's conversion, at its input size (differentiable)."""
    return resize_input(to_grey(images, config.grey), (config.input_height, config.input_width))


def resize_input(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The one resize used in training and reading (antialiased bilinear, differentiable)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def ctc_loss(log_probs: torch.Tensor, labels: list[list[int]], reduction: str = "mean") -> torch.Tensor:
    """CTC loss of label index lists against (T, B, C) log-probs; 'none' gives one loss per captcha."""
    device = log_probs.device
    targets = torch.tensor([i for label in labels for i in label], dtype=torch.long, device=device)
    target_lengths = torch.tensor([len(label) for label in labels], dtype=torch.long, device=device)
    input_lengths = torch.full((log_probs.shape[1],), log_probs.shape[0], dtype=torch.long, device=device)
    loss = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
                      reduction="none", zero_infinity=True)
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def greedy_decode(log_probs: torch.Tensor, charset: Charset) -> list[str]:
    """Best path: argmax per column, collapse repeats, drop blanks. (T, B, C) -> B strings."""
    best = log_probs.argmax(-1).T.tolist()  # (T, B) -> (B, T)
    texts = []
    for path in best:
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        texts.append(charset.decode(collapsed))
    return texts


def to_input_bytes(images, size: tuple[int, int], grey: str = DEFAULT_GREY) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) arrays of one size -> uint8 (B, 1, H, W) at a model's input: its size, its grey."""
    return resize_input(to_grey(to_tensor(list(images)), grey), size).mul(255).round().to(torch.uint8)


def to_grey(images: torch.Tensor, conversion: str = DEFAULT_GREY) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) by `conversion`'s weights (differentiable); grey images pass unchanged."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(GREY[check_grey(conversion)], dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def to_planes(masks) -> torch.Tensor:
    """(N, H, W) per-pixel arrays (masks, budgets) -> (N, 1, H, W) tensors of their dtype: a plane for every
    channel."""
    return torch.from_numpy(np.asarray(masks)).unsqueeze(1)


def to_tensor(images) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) arrays of one size -> (B, 1 or 3, H, W) float in [0, 1]."""
    stacked = torch.from_numpy(np.stack(images))
    stacked = stacked.unsqueeze(1) if stacked.dim() == 3 else stacked.permute(0, 3, 1, 2)
    return stacked.float().div_(255.0)


def to_arrays(images: torch.Tensor) -> np.ndarray:
    """(B, 1 or 3, H, W) floats in [0, 1] -> uint8 (B, H, W) or (B, H, W, 3), rounded to the 8-bit grid."""
    levels = images.detach().mul(255).round().clamp(0, 255).to(torch.uint8)
    return (levels[:, 0] if levels.shape[1] == 1 else levels.permute(0, 2, 3, 1)).contiguous().numpy()
