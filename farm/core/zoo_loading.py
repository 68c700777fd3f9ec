"""Loading the zoo's solvers: any member to judge with, donors only to attack with.

Apart from the catalogue (farm.core.zoo), which is torch-free so that a command checks a
spec's ensemble without loading torch.
"""

from __future__ import annotations

import json

from farm.core.checkpoint import Solver, load_solver_dir
from farm.core.zoo import DONOR, member, zoo_path
from farm.exceptions import CheckpointError, HeldOutError

__all__ = ["load_member", "load_donor"]

_LOADED: dict[tuple[str, str], Solver] = {}  # (weights sha256, device): workers ask for donors every shard


def load_member(name: str, device: str = "cpu") -> Solver:
    """Load any zoo solver for evaluation (once per weights and device: only the small card is re-read)."""
    m = member(name)
    folder = zoo_path() / name
    if not (folder / "card.json").exists():
        raise CheckpointError(f"zoo: {name} is not trained here; run `{m.command()}`")
    try:
        key = (json.loads((folder / "card.json").read_text())["sha256"], device)
    except (ValueError, KeyError, TypeError):
        key = None  # a broken card: load_solver_dir says what is wrong
    if key in _LOADED:
        return _LOADED[key]
    solver = load_solver_dir(folder, device=device)
    solver.card.setdefault("zoo", {"name": name, "role": m.role})
    _LOADED[solver.sha256, device] = solver
    return solver


def load_donor(name: str, device: str = "cpu") -> Solver:
    """Load a zoo solver to use as a substitute: donors only."""
    if member(name).role != DONOR:
        raise HeldOutError(f"zoo: {name} is held out; it judges transfer and may never serve as a substitute")
    return load_member(name, device)
