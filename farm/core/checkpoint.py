"""Checkpoints: safetensors weights plus a JSON card, verified by sha256 before anything is built.

No pickle anywhere: weights are read with safetensors from bytes whose hash the card names.
`Solver` is a loaded checkpoint: the model, its charset and its card, ready to read captchas.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from farm.core.charset import Charset
from farm.exceptions import CheckpointError
from farm.core.colour import GREY
from farm.core.model import CRNN, CRNNConfig, model_input, to_input_bytes, to_tensor
from farm.core.solvers import PositionCNN, PositionConfig, ResNetConfig, ResNetCTC, TransformerConfig, TransformerCTC

__all__ = ["Solver", "build_model", "architecture_name", "weights_bytes", "build_card", "load_solver",
           "load_solver_dir", "read_solver_dir", "save_solver_dir", "input_bytes", "sha256_hex", "CARD_FORMAT"]

CARD_FORMAT = "captchafarm-card/1"


def _architectures() -> dict:
    return {"crnn": (CRNN, CRNNConfig), "resnet_ctc": (ResNetCTC, ResNetConfig),
            "transformer_ctc": (TransformerCTC, TransformerConfig), "position_cnn": (PositionCNN, PositionConfig)}


def build_model(architecture: str, config: dict | None = None, num_classes: int | None = None):
    """A fresh model of a named architecture; config keys override its defaults."""
    architectures = _architectures()
    if architecture not in architectures:
        raise ValueError(f"architecture: unknown {architecture!r}; known: {', '.join(architectures)}")
    model_cls, config_cls = architectures[architecture]
    data = dict(config or {})
    if num_classes is not None:
        data["num_classes"] = num_classes
    return model_cls(config_cls.from_dict(data))


def architecture_name(model) -> str:
    for name, (model_cls, _) in _architectures().items():
        if type(model) is model_cls:
            return name
    raise ValueError(f"model: {type(model).__name__} is not a registered architecture")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Solver:
    """A model that reads captchas, with the card it came from."""

    model: torch.nn.Module
    charset: Charset
    card: dict
    # a version's hardened copies (its card's `hardened`, farm.ops.anticipation): attack targets beside it
    companions: list["Solver"] = field(default_factory=list, repr=False)
    # the perturbation generator trained against this version (farm.core.generator), stored beside it: the
    # `generator` method runs it
    generator: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.card.get("version", "unversioned")

    @property
    def sha256(self) -> str:
        return self.card["sha256"]

    def to(self, device) -> "Solver":
        self.model.to(device)
        return self

    @torch.no_grad()
    def read(self, images, batch_size: int = 256) -> list[str]:
        """Texts of uint8 (H, W) or (H, W, 3) arrays, or a (B, 1 or 3, H, W) float tensor in [0, 1]."""
        self.model.eval()
        device = next(self.model.parameters()).device
        if not isinstance(images, torch.Tensor):
            return [t for i in range(0, len(images), batch_size)
                    for t in self.read(self._stack(images[i:i + batch_size]), batch_size)]
        texts = []
        for i in range(0, len(images), batch_size):
            texts += self.model.decode(self.model(images[i:i + batch_size].to(device)), self.charset)
        return texts

    def _stack(self, images) -> torch.Tensor:
        """uint8 arrays as one batch; mixed sizes (or grey and colour) go straight to the model's input (as alone)."""
        if len({im.shape for im in images}) == 1:
            return to_tensor(images)
        return torch.cat([model_input(to_tensor([im]), self.model.config) for im in images])


def weights_bytes(model: torch.nn.Module) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(state)


def build_card(model, charset: Charset, weights: bytes, **extra) -> dict:
    card = {"format": CARD_FORMAT, "architecture": architecture_name(model), "config": model.config.to_dict(),
            "charset": charset.to_dict(),
            "input_size": [model.config.input_height, model.config.input_width],
            "sha256": sha256_hex(weights)}
    card.update(extra)
    return card


def load_solver(weights: bytes, card: dict, expect_charset: Charset | None = None,
                device: str = "cpu") -> Solver:
    """Verify and build. Raises CheckpointError saying which check failed; never unpickles."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"card: not a captchafarm card (format {card.get('format') if isinstance(card, dict) else None!r}, "
                              f"expected {CARD_FORMAT!r})")
    digest = sha256_hex(weights)
    if digest != card.get("sha256"):
        raise CheckpointError(f"weights: sha256 {digest[:12]}… does not match the card's "
                              f"{str(card.get('sha256'))[:12]}…; the file is corrupt or belongs to another card")
    try:
        charset = Charset.from_dict(card["charset"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"card: charset is missing or invalid ({e})") from e
    if expect_charset is not None and charset.alphabet != expect_charset.alphabet:
        raise CheckpointError(f"charset: checkpoint reads {charset.alphabet!r}, "
                              f"but {expect_charset.alphabet!r} was expected; use a checkpoint trained on that alphabet")
    architectures = _architectures()
    if card.get("architecture") not in architectures:
        raise CheckpointError(f"card: unknown architecture {card.get('architecture')!r}; known: {', '.join(architectures)}")
    model_cls, config_cls = architectures[card["architecture"]]
    try:
        config = config_cls.from_dict(card["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"card: architecture config is invalid ({e})") from e
    if config.grey not in GREY:
        raise CheckpointError(f"card: config.grey {config.grey!r} is not a conversion this farm knows "
                              f"({', '.join(GREY)}); the card comes from a newer or foreign farm")
    if config.num_classes != charset.num_classes:
        raise CheckpointError(f"card: the model has {config.num_classes} classes but the charset needs {charset.num_classes}")
    try:
        state = load_safetensors(weights)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"weights: not a readable safetensors file ({e})") from e
    model = model_cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights: do not fit the card's architecture ({str(e).splitlines()[0]})") from e
    model.eval().to(device)
    return Solver(model, charset, card)


def save_solver_dir(solver_model: torch.nn.Module, charset: Charset, directory: Path, **card_fields) -> dict:
    """Write model.safetensors and card.json into a folder; returns the card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = weights_bytes(solver_model)
    card = build_card(solver_model, charset, weights, **card_fields)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def read_solver_dir(directory: Path, what: str = "checkpoint") -> tuple[bytes, dict]:
    """(weights, card) of a checkpoint (or generator: `what`) folder, unchecked; CheckpointError naming what is
    missing or unreadable."""
    directory = Path(directory)
    try:
        weights = (directory / "model.safetensors").read_bytes()
        card = json.loads((directory / "card.json").read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{what}: {e.filename} is missing; a {what} folder holds "
                              f"model.safetensors and card.json") from e
    except ValueError as e:  # not JSON, or not UTF-8
        raise CheckpointError(f"card: {directory / 'card.json'} is not valid JSON ({e})") from e
    return weights, card


def load_solver_dir(directory: Path, expect_charset: Charset | None = None, device: str = "cpu") -> Solver:
    return load_solver(*read_solver_dir(directory), expect_charset, device)


def input_bytes(solver: Solver, images) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) arrays of one size as uint8 (N, 1, H, W) at the solver's input (size, grey
    conversion): compact to keep."""
    config = solver.model.config
    return to_input_bytes(images, (config.input_height, config.input_width), config.grey)
