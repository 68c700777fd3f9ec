"""Which zoo donors the attackers resemble, read off their answers: the donors to attack with next.

A few hundred answers teach a fine-tune little about how a bot misreads (benchmarks/
extraction_variants.py), but they say plainly which captchas it solved. A solver that fails on
the same captchas shares the bot's weak directions, so perturbations aimed at it too transfer
to the bot. Resemblance is the phi coefficient between "this solver reads the captcha right" and
"the attacker did", over every answered captcha whose truth the farm keeps and that was not
perturbed against that solver: there it fails by construction, which says nothing of the bot.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from farm.core.checkpoint import Solver, input_bytes
from farm.core.zoo import DONOR, members
from farm.core.zoo_loading import load_donor

__all__ = ["phi", "resemblance", "choose_donors"]


def phi(first: list[bool], second: list[bool]) -> float | None:
    """Correlation of two yes/no series; None when either never varies (it then tells nothing)."""
    a, b = np.asarray(first, bool), np.asarray(second, bool)
    n11, n10, n01, n00 = (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()
    spread = float((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    return None if spread == 0 else float(n11 * n00 - n10 * n01) / math.sqrt(spread)


def resemblance(solver: Solver, pictures: list[np.ndarray], truths: list[str], solved: list[bool]) -> float | None:
    """Phi between the solver reading each picture right and the attacker having answered it right."""

    if not pictures:
        return None
    images = torch.cat([input_bytes(solver, [p]) for p in pictures])  # pools of several schemes differ in size
    reads = solver.read(images.float().div(255))
    return phi([r == t for r, t in zip(reads, truths)], solved)


def choose_donors(substitute: Solver, pictures: list[np.ndarray], truths: list[str], solved: list[bool],
                  aims: list[frozenset], limit: int, device: str = "cpu",
                  keep: tuple[str, ...] = ()) -> tuple[list[str], dict[str, float | None]]:
    """Up to `limit` donors besides `keep` that resemble the attackers more than the substitute does, best first.

    Each donor is judged on the captchas that were not aimed at it (`aims`: the donors each was
    perturbed against); None when those tell nothing. Returns (names, resemblance of the
    substitute and of every donor that reads its alphabet).
    """
    if limit < 1 or not pictures:
        return [], {}
    scores = {"substitute": resemblance(substitute, pictures, truths, solved)}
    for member in members(DONOR):
        donor = load_donor(member.name, device)
        if donor.charset.alphabet == substitute.charset.alphabet:
            rows = [i for i, aim in enumerate(aims) if member.name not in aim]
            scores[member.name] = resemblance(donor, *([seq[i] for i in rows] for seq in (pictures, truths, solved)))
    floor = scores["substitute"] if scores["substitute"] is not None else 0.0
    better = [name for name, score in scores.items()
              if name not in ("substitute", *keep) and score is not None and score > floor]
    rounded = {name: None if score is None else round(score, 4) for name, score in scores.items()}
    return sorted(better, key=scores.get, reverse=True)[:limit], rounded
