"""Which aim the attackers solved least, measured: trial pools instead of inferred resemblance.

A pool's *aim* is the set of zoo donors it was perturbed against besides the substitute (the
pool's `--ensemble` and those its substitute's card names). When flagged users answered pools
of several aims, their answers measure each aim's transfer to the bots actually seen, which is
what decides; resemblance (farm.resemblance) only infers it from one aim's answers, and names
the bot's family, which need not be the aim that fools it most (docs/platforms.md). An operator
runs trials by serving flagged users small pools of each candidate aim (`farm generate
--ensemble ...`); `farm finetune` then names the least solved one.
"""

from __future__ import annotations

import math

__all__ = ["aim_name", "tally", "best_aim"]


def aim_name(aim: tuple[str, ...]) -> str:
    """How an aim is shown and keyed in cards: its donors joined by '+', `substitute` for none."""
    return "+".join(aim) or "substitute"


def tally(aims: list[tuple[str, ...] | None], solved: list[bool]) -> dict[tuple[str, ...], dict]:
    """Per aim: captchas answered, solved, and the solved share (answers without a pool row are left out)."""
    counts: dict[tuple[str, ...], list[int]] = {}
    for aim, right in zip(aims, solved):
        if aim is not None:
            counts.setdefault(aim, [0, 0])
            counts[aim][0] += 1
            counts[aim][1] += bool(right)
    return {aim: {"answered": n, "solved": k, "rate": round(k / n, 4)} for aim, (n, k) in sorted(counts.items())}


def best_aim(tallies: dict[tuple[str, ...], dict], least: int) -> tuple[str, ...] | None:
    """The aim to attack with next, from aims with at least `least` answers; None when they cannot tell.

    The least solved aim, or a cheaper one (fewer donors) that the answers cannot tell from it:
    within twice the standard error of the difference. None when fewer than two aims qualify or
    no aim is clearly solved more than the least solved: the answers then measure nothing.
    """
    qualified = {aim: t for aim, t in tallies.items() if t["answered"] >= least}
    if len(qualified) < 2:
        return None
    best = min(qualified, key=lambda aim: (qualified[aim]["rate"], len(aim)))
    tied = [aim for aim in qualified if not _clearly_more(qualified[aim], qualified[best])]
    if len(tied) == len(qualified):
        return None
    return min(tied, key=lambda aim: (len(aim), qualified[aim]["rate"]))


def _clearly_more(first: dict, second: dict) -> bool:
    """`first` solved more often than `second` by more than twice the standard error of the difference."""
    p, q = first["solved"] / first["answered"], second["solved"] / second["answered"]
    error = math.sqrt(p * (1 - p) / first["answered"] + q * (1 - q) / second["answered"])
    return p - q > 2 * error
