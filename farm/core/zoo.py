"""The solver zoo: solvers trained here independently of the substitute, to judge transfer honestly.

Donors may serve as substitutes (ensembles) or guide tuning. Held-out solvers never do: they
stand for the bots we have not seen, so no setting is chosen by looking at them, and the
loader (farm.core.zoo_loading) refuses to hand one out as a substitute. The catalogue is torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from farm.exceptions import CheckpointError, HeldOutError, SettingError

__all__ = ["Member", "ZOO", "member", "members", "zoo_path", "card_ensemble", "DONOR", "HELD_OUT"]

DONOR, HELD_OUT = "donor", "held-out"


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    architecture: str
    description: str
    mix: dict = field(default_factory=lambda: {"classic": 1.0})
    steps: int = 4000  # zoo solvers are judges, not products: enough to read clean classic >= 90%
    samples: int = 64_000
    seed: int = 1
    lr: float = 2e-3
    augment: tuple[str, ...] = ()
    model: dict = field(default_factory=dict)

    def command(self) -> str:
        return f"farm zoo train {self.name}"


ZOO: dict[str, Member] = {m.name: m for m in (
    Member("crnn-b", DONOR, "crnn", "the substitute's architecture, another seed and scheme mix",
           mix={"classic": 0.7, "lines": 0.15, "wave": 0.15}, seed=11),
    Member("resnet-a", DONOR, "resnet_ctc", "residual CTC reader at 48x128", seed=12,
           model={"input_height": 48, "input_width": 128}),
    Member("position-a", HELD_OUT, "position_cnn", "plain CNN, one classifier head per character", seed=21,
           steps=7000, samples=96_000, lr=2e-3,
           model={"input_height": 32, "input_width": 96, "channels": [32, 64, 128, 192], "hidden": 512}),
    Member("transformer-a", HELD_OUT, "transformer_ctc", "conv stem + self-attention over columns, CTC",
           seed=22, lr=1e-3),
    Member("crnn-aug", HELD_OUT, "crnn", "deeper CRNN at 48x128 trained on noisy, blurred and binarised inputs",
           seed=23, augment=("noise", "blur", "binarize", "median3"),
           model={"input_height": 48, "input_width": 128, "channels": [16, 32, 64, 128, 128]}),
)}


def zoo_path() -> Path:
    """Where zoo checkpoints live: shipped inside the package, beside the bundled substitute."""
    return Path(str(resources.files("farm") / "bundled" / "zoo"))


def member(name: str) -> Member:
    if name not in ZOO:
        raise SettingError(f"zoo: unknown solver {name!r}; known: {', '.join(ZOO)}")
    return ZOO[name]


def members(role: str | None = None) -> list[Member]:
    return [m for m in ZOO.values() if role in (None, m.role)]


def card_ensemble(card: dict) -> list[str]:
    """The donors a substitute's card names to attack with it (a fine-tune's choice, farm.ops.resemblance).

    Raises CheckpointError for anything but a list of zoo names, HeldOutError for a held-out one.
    """
    names = card.get("ensemble") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"card: ensemble must list zoo donors (got {names!r})")
    for name in names:
        if name not in ZOO:
            raise CheckpointError(f"card: ensemble names {name!r}, not a zoo solver; known: {', '.join(ZOO)}")
        if ZOO[name].role != DONOR:
            raise HeldOutError(f"card: ensemble names {name}, a held-out zoo solver; only donors may join a substitute")
    return names
