"""A training run's resumable state, without pickle: tensors in safetensors, the rest in JSON.

Shared by the substitute's training (farm.ops.train) and the generator's (farm.ops.generator_training):
the model's and the optimiser's tensors, the step reached, the seconds spent, and the run's settings,
which a resume must repeat (settings in `free` may differ: they change how, not what, is computed).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from farm.exceptions import SettingError

__all__ = ["save_state", "check_same_run", "load_state", "has_state"]


def has_state(path: Path) -> bool:
    return (Path(path) / "state.json").exists()


def save_state(path: Path, model, optimizer, step: int, config, elapsed: float) -> None:
    """Write the state of `model` and `optimizer` at `step` of the run `config` (a dataclass) into folder `path`."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "state.safetensors.tmp"))
    (path / "state.safetensors.tmp").replace(path / "state.safetensors")
    (path / "state.json").write_text(json.dumps({"step": step, "elapsed": elapsed, "config": asdict(config),
                                                 "model": model.config.to_dict()}, indent=2))


def check_same_run(path: Path, config, free: tuple[str, ...] = (), flag: str = "--no-resume") -> None:
    """A resume continues the same run: other settings would silently mix two recipes in one checkpoint."""
    path = Path(path)
    try:
        saved = json.loads((path / "state.json").read_text())["config"]
    except (ValueError, KeyError, OSError) as e:
        raise SettingError(f"resume: {path / 'state.json'} is unreadable ({e}); remove {path} or use {flag}") from e
    now = json.loads(json.dumps(asdict(config)))  # tuples as lists, like the saved JSON
    differs = [k for k in now if k not in free and saved.get(k) != now[k]]
    if differs:
        raise SettingError(f"resume: {path} holds a run with other settings (differs in {', '.join(differs)}); "
                           f"repeat them, choose another folder, or pass {flag} to start over")


def load_state(path: Path, model, optimizer) -> tuple[int, float]:
    """Load the saved state into `model` and `optimizer`; returns (step, elapsed seconds)."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt["state"] = state
    optimizer.load_state_dict(opt)
    return meta["step"], meta.get("elapsed", 0.0)
