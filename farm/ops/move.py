"""The farm's move: which perturbation family the next generation is made of, chosen from the bot's answers.

Each answer names a pool, each pool's manifest its family (farm.storage.pools.pool_family), and
the pool's keys whether the bot read the captcha: so the answers tell what share of each family
the bot reads. A family it reads LEARNED or more of is no defence any longer, and the next
generation moves to another (farm.core.families.next_family). The choice and its evidence go into
the new version's card as `family`, which `farm generate` follows.
"""

from __future__ import annotations

from collections import Counter

from farm.core.families import FAMILIES, LEARNED, next_family

__all__ = ["family_read", "choose_family", "shown", "learned", "evidence"]


def family_read(families: list[str | None], solved: list[bool]) -> tuple[dict[str, float], int]:
    """({family: share of its answered captchas the bot read}, answers counted), one row per answered captcha.

    Rows of no family (clean pools, a labelled folder, a captcha whose key is gone: None) are not counted.
    """
    seen, right = Counter(), Counter()
    for family, ok in zip(families, solved):
        if family is not None:
            seen[family] += 1
            right[family] += bool(ok)
    return {name: round(right[name] / seen[name], 4) for name in seen}, sum(seen.values())


def choose_family(current: str, families: list[str | None], solved: list[bool],
                  earlier: dict[str, float] | None = None, mode: str = "L") -> dict:
    """The card's `family`: the next generation's family, the one it moves from, and the evidence.

    `earlier`: what earlier generations' answers showed (evidence of the base's card); this batch's share of a
    family replaces it. An operator who keeps the labels it bought still reads what it learned
    then, so a family learned once counts as learned until answers show otherwise. `mode`: the captchas'
    (grey "L", colour "RGB"), whose clean-up some families do not survive.
    {"name", "from", "read": {family: share read in this batch}, "earlier", "answers": rows counted,
    "learned": the bar}.
    """
    read, answers = family_read(families, solved)
    earlier = dict(earlier or {})
    return {"name": next_family(current, {**earlier, **read}, mode=mode), "from": current, "read": read,
            "earlier": earlier, "answers": answers, "learned": LEARNED}


def shown(move: dict) -> dict[str, float]:
    """What a move's answers and the lineage before it showed of each family, the newest of a family winning."""
    result: dict[str, float] = {}
    for source in (move.get("earlier"), move.get("read")):
        if isinstance(source, dict):
            result.update({k: v for k, v in source.items() if isinstance(k, str) and isinstance(v, (int, float))})
    return result


def learned(move: dict) -> list[str]:
    """The families a move's evidence shows the bot reads LEARNED or more of, in FAMILIES' order."""
    read = shown(move)
    return [name for name in FAMILIES if read.get(name, 0.0) >= LEARNED]


def evidence(card: dict) -> dict[str, float]:
    """What the answers behind a version showed of each family: its move's evidence and what that move was given.

    A move records both in the card's `family` (choose_family), so a version's card holds its whole
    lineage's evidence, the newest of a family winning; cards from before moves recorded it hold none.
    """
    return shown(card["family"]) if isinstance(card.get("family"), dict) else {}
