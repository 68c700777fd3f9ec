"""Other solver architectures attackers plausibly run, for the zoo that judges transfer.

Every solver maps (B, 1, H, W) floats in [0, 1] (colour: (B, 3, H, W), read through its card's grey
conversion, farm.core.colour; any size: it resizes itself) to log-probs (T, B, C), and says how to
score (`loss`) and read (`decode`) them, so attacks, training and evaluation treat every architecture alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from farm.core.charset import Charset
from farm.core.colour import DEFAULT_GREY
from farm.core.model import ctc_loss, greedy_decode, model_input

__all__ = ["ResNetConfig", "ResNetCTC", "TransformerConfig", "TransformerCTC", "PositionConfig", "PositionCNN"]


class _Config:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known.items()})


class _CTCReader(nn.Module):
    def loss(self, output, labels, reduction="mean"):
        return ctc_loss(output, labels, reduction)

    def decode(self, output, charset: Charset) -> list[str]:
        return greedy_decode(output, charset)


@dataclass(frozen=True)
class ResNetConfig(_Config):
    """A residual CTC reader at full captcha resolution (the common 'captcha breaker' recipe)."""

    num_classes: int = 37
    input_height: int = 64
    input_width: int = 160
    channels: tuple[int, ...] = (32, 64, 128)
    hidden: int = 128
    grey: str = DEFAULT_GREY


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.skip(x))


class ResNetCTC(_CTCReader):
    """Stem /2, residual stages /2 then (2, 1) strides, height pooled away, LSTM, CTC."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Sequential(nn.Conv2d(1, c[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())
        stages, c_in = [], c[0]
        for i, c_out in enumerate(c):
            stages.append(_Residual(c_in, c_out, (2, 2) if i == 0 else (2, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.rnn = nn.LSTM(c_in, config.hidden, bidirectional=True)
        self.classify = nn.Linear(2 * config.hidden, config.num_classes)

    def forward(self, images):
        x = model_input(images, self.config)
        x = self.stages(self.stem(x * 2 - 1))  # (B, C, h, T)
        x = x.mean(2).permute(2, 0, 1)  # (B, C, h, T) -> (T, B, C)
        x, _ = self.rnn(x)
        return self.classify(x).log_softmax(-1)


@dataclass(frozen=True)
class TransformerConfig(_Config):
    """Conv stem, then self-attention over image columns, CTC: the transformer-OCR family."""

    num_classes: int = 37
    input_height: int = 32
    input_width: int = 128
    width: int = 128
    layers: int = 3
    heads: int = 4
    grey: str = DEFAULT_GREY


class TransformerCTC(_CTCReader):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(64, w, 3, padding=1), nn.BatchNorm2d(w), nn.GELU(), nn.MaxPool2d((2, 1)))
        columns = config.input_width // 4
        self.position = nn.Parameter(torch.zeros(columns, 1, w))
        layer = nn.TransformerEncoderLayer(w, config.heads, 2 * w, dropout=0.1, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.classify = nn.Linear(w, config.num_classes)

    def forward(self, images):
        x = model_input(images, self.config)
        x = self.stem(x * 2 - 1).mean(2).permute(2, 0, 1)  # (B, C, h, T) -> (T, B, C)
        x = self.encoder(x + self.position)
        return self.classify(x).log_softmax(-1)


@dataclass(frozen=True)
class PositionConfig(_Config):
    """A plain CNN with one classifier head per character position (fixed-length captchas)."""

    num_classes: int = 37  # class 0 = no character here (shorter labels)
    input_height: int = 64
    input_width: int = 160
    positions: int = 4
    channels: tuple[int, ...] = (32, 64, 96, 128)
    hidden: int = 256
    grey: str = DEFAULT_GREY


class PositionCNN(nn.Module):
    def __init__(self, config: PositionConfig):
        super().__init__()
        self.config = config
        blocks, c_in = [], 1
        for c_out in config.channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d((2, 6)))
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 12, config.hidden), nn.ReLU(), nn.Dropout(0.2))
        self.heads = nn.Linear(config.hidden, config.positions * config.num_classes)

    def forward(self, images):
        x = model_input(images, self.config)
        logits = self.heads(self.hidden(self.features(x * 2 - 1)))
        b = logits.shape[0]
        return logits.view(b, self.config.positions, -1).permute(1, 0, 2).log_softmax(-1)  # (P, B, C)

    def loss(self, output, labels, reduction="mean"):
        target = torch.zeros(output.shape[1], output.shape[0], dtype=torch.long, device=output.device)
        for i, label in enumerate(labels):
            target[i, :len(label)] = torch.tensor(label[:output.shape[0]])
        per = F.nll_loss(output.permute(1, 2, 0), target, reduction="none").sum(1)  # (B,)
        return per if reduction == "none" else (per.mean() if reduction == "mean" else per.sum())

    def decode(self, output, charset: Charset) -> list[str]:
        return [charset.decode(path) for path in output.argmax(-1).T.tolist()]
