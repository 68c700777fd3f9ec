"""Settings from the environment (CLI flags override them): store, broker, secret, device."""

from __future__ import annotations

import os
import secrets as _secrets

import torch

from farm.storage.store import LocalStore, Store
from farm.exceptions import SettingError

__all__ = ["secret", "device"]


def secret(store: Store) -> bytes:
    """FARM_SECRET, the key of captcha ids. Embedded runs on a local folder keep one beside the data."""
    value = os.environ.get("FARM_SECRET")
    if value:
        return value.encode()
    if isinstance(store, LocalStore):
        path = store.root / ".farm-secret"
        if not path.exists():
            store.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(_secrets.token_hex(32))
        return path.read_text().strip().encode()
    raise SettingError("FARM_SECRET: not set; captcha ids on a shared store need a secret every worker knows")


def device(name: str | None = None) -> str:
    """FARM_DEVICE: auto (CUDA when present), cpu or cuda."""
    name = name or os.environ.get("FARM_DEVICE", "auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise SettingError(f"FARM_DEVICE: {name!r} is not auto, cpu or cuda")
    return name
