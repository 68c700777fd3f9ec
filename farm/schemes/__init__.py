"""Captcha schemes by name. Built-ins register here; plugins may add their own with `register`."""

from __future__ import annotations

from farm.schemes.base import Captcha, Scheme, captcha_seed
from farm.schemes.classic import ClassicScheme
from farm.schemes.lines import LinesScheme
from farm.schemes.wave import WaveScheme

__all__ = ["Captcha", "Scheme", "captcha_seed", "get_scheme", "register", "scheme_names"]

_SCHEMES: dict[str, type[Scheme]] = {}
_INSTANCES: dict[str, Scheme] = {}


def register(cls: type[Scheme]) -> type[Scheme]:
    """Make a scheme class available by its name."""
    _SCHEMES[cls.name] = cls
    return cls


def scheme_names() -> list[str]:
    return list(_SCHEMES)


def get_scheme(name: str) -> Scheme:
    """The shared instance of a scheme; ValueError lists the known names."""
    if name not in _SCHEMES:
        raise ValueError(f"scheme: unknown scheme {name!r}; known: {', '.join(scheme_names())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _SCHEMES[name]()
    return _INSTANCES[name]


for _cls in (ClassicScheme, LinesScheme, WaveScheme):
    register(_cls)
