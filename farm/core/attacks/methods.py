"""The attack classes by name, and make_attack: the one way a pool builds its attack."""

from farm.core.attacks.base import Attack
from farm.core.attacks.direct import Direct
from farm.core.attacks.edge import Edge
from farm.core.attacks.generated import Generated
from farm.core.attacks.iterative import Iterative
from farm.core.attacks.momentum import Momentum
from farm.core.attacks.robust import Robust
from farm.core.attacks.settings import declaration
from farm.core.attacks.warp import Warp
from farm.core.attacks.warped_edge import WarpedEdge

__all__ = ["Attack", "METHODS", "make_attack"]

METHODS: dict[str, type[Attack]] = {cls.name: cls for cls in (Direct, Iterative, Momentum, Robust, Warp, Edge,
                                                               WarpedEdge, Generated)}


def make_attack(method: str, solvers, **kwargs) -> Attack:
    """An attack by name; ValueError lists the known methods, or names a setting the method does not take."""
    declaration(method)  # ValueError for an unknown method
    if method not in METHODS:  # "none" perturbs nothing
        raise ValueError(f"method: {method} is no attack; it keeps the clean captchas")
    return METHODS[method](solvers, **kwargs)
