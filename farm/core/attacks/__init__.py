"""Perturbation methods by name: one class per module on one base (see base.Attack)."""

from farm.core.attacks.base import NORMS, Attack
from farm.core.attacks.direct import Direct
from farm.core.attacks.iterative import Iterative
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.robust import Robust

__all__ = ["Attack", "NORMS", "METHODS", "make_attack"]

METHODS: dict[str, type[Attack]] = {cls.name: cls for cls in (Direct, Iterative, Momentum, Robust)}


def make_attack(method: str, solvers, **kwargs) -> Attack:
    """An attack by name; ValueError lists the known methods."""
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; known: none, {', '.join(METHODS)}")
    return METHODS[method](solvers, **kwargs)
