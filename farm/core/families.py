"""Perturbation families: the kinds of perturbation a generation is made with, and how the farm moves between them.

A bot operator who is blocked buys labels and retrains; what the bot learns on one kind of
perturbation carries to its variants (other noise budgets, sharper or textured noise) but not to
another kind (benchmarks/moving_target.py: adapted on 3,000 captchas of today's dense noise, a
held-out bot reads 80% of it and ~25% of a geometric warp; adapted on the warp, 0-2% of the
noise). So a generation differs from the last in its *family*, each family served by one preset,
and the farm's move (`farm finetune`) chooses the next family from what the bot read (next_family).
Torch-free and store-free, like the presets: a card or a spec is a dict or a name here.
"""

from __future__ import annotations

from farm.core.colour import check_mode
from farm.core.presets import DEFAULT_PRESET, METHOD_PRESETS
from farm.exceptions import SettingError

__all__ = ["FAMILIES", "INGREDIENTS", "UNDONE", "METHOD_FAMILIES", "DEFAULT_FAMILIES", "LEARNED", "family_preset",
           "method_family", "card_family", "base_preset", "next_family"]

# Each family and the preset its pools are made with, in the order the farm moves to an unseen one.
# ink: dots in the glyphs' tone on their edges, which survive the thresholds that wipe dense noise (issue 25).
# warped_ink: both at once, a warp then ink on the warped glyphs: what is left unseen once a bot has learned both apart
# (benchmarks/arms_race.py --adaptive --remember, round 2: bots adapted on 3,000 ink and 3,000 geometry captchas read
# 4.0% and 1.2% of it, where geometry aimed at the same copies was read at 30.4% and 36.4%; with warps that keep every
# glyph its own, farm.core.identity, crnn-aug read 1.6% of it after 56.8% of the geometry before).
FAMILIES: dict[str, str] = {"noise": "recommended", "geometry": "warp", "ink": "edge", "warped_ink": "warped_edge"}

# What a bot learns from each family's pools. An edge pool is dots on top of the default's dense noise, so a bot that
# learned ink reads noise too (benchmarks/arms_race.py --adaptive on colour `classic`: crnn-aug adapted on 3,000 ink
# captchas reads 53.6% of a noise generation, 21.2% of a geometry one).
INGREDIENTS: dict[str, frozenset[str]] = {"noise": frozenset({"noise"}), "geometry": frozenset({"geometry"}),
                                          "ink": frozenset({"ink", "noise"}),
                                          "warped_ink": frozenset({"geometry", "ink", "noise"})}

# Families the bot's clean-up undoes on a mode's captchas, so the move never goes to them there: on colour, a bot
# reading the channel of most contrast, or Otsu after its grey, gets back what dense noise takes (issue 28; on colour
# `classic` a bot that retrained reads a noise generation after Otsu at 60.4% (crnn-aug, round 1) and 44.0%
# (transformer-a, round 2), a geometry one at 11.2-22.0%: benchmarks/arms_race.py --adaptive).
UNDONE: dict[str, frozenset[str]] = {"L": frozenset(), "RGB": frozenset({"noise"})}

# The family of a spec by its method: every gradient-noise method is noise, whichever preset set it
# (`--preset paper` is noise too). "none" (clean captchas, the control) belongs to none.
# A generator's pools are noise, or ink when it places dots (method_family).
METHOD_FAMILIES: dict[str, str] = {"direct": "noise", "iterative": "noise", "momentum": "noise", "robust": "noise",
                                   "warp": "geometry", "edge": "ink", "warped_edge": "warped_ink",
                                   "generator": "noise"}

# The family of a generation whose card names none (the bundled v1, cards from before families), by what the
# scheme draws: dense noise on grey; ink on colour, where a bot reading the channel of most contrast gets back
# what noise takes and the glyph-coloured dots hold (issue 28, benchmarks/colour.py).
DEFAULT_FAMILIES: dict[str, str] = {"L": next(name for name, preset in FAMILIES.items() if preset == DEFAULT_PRESET),
                                    "RGB": "ink"}

# A family the bot reads this share of is learned, and the farm moves on: issue 26's goal is that a bot adapted
# on generation k reads at most 25% of generation k+1, so a family read at 25% or more is no longer a defence.
LEARNED = 0.25


def family_preset(name: str) -> str:
    """The preset a family's pools are made with; SettingError naming the known families."""
    if name not in FAMILIES:
        raise SettingError(f"family: unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def method_family(method: str, dots: int | None = None, mode: str = "L") -> str | None:
    """The family of a pool made with `method`; None for clean captchas (method none) or a method of no family.

    A generator that places dots makes ink, as edge: its `dots`, or left out, as many as a generator trained for a
    `mode` scheme places (those of the mode's default pools: ink on colour, none on grey).
    """
    if method == "generator" and (dots if dots is not None else DEFAULT_FAMILIES[check_mode(mode)] == "ink"):
        return "ink"
    return METHOD_FAMILIES.get(method)


def card_family(card: dict, mode: str = "L") -> str:
    """The family a version's pools of a `mode` scheme are made with: its card's, else (bundled v1, older cards) the
    default of the mode."""
    name = (card.get("family") or {}).get("name") if isinstance(card.get("family"), dict) else None
    return name if isinstance(name, str) and name else DEFAULT_FAMILIES[check_mode(mode)]


def base_preset(family: str, preset: str | None, given: dict) -> str:
    """The preset a new pool's settings start from: `preset` when named; the default when a method is.

    With neither, the family's: `farm generate` with no method options follows the generation.
    A method named without a preset means what it always meant (the default preset's mask and
    glyph budget, that method's settings; the generator, which stands in for the default pools, its own
    preset: METHOD_PRESETS), whatever family the generation is of; settings given alone adjust the
    family's preset.
    """
    if preset is not None:
        return preset
    return METHOD_PRESETS.get(given["method"], DEFAULT_PRESET) if "method" in given else family_preset(family)


def next_family(current: str, read: dict[str, float], families: dict[str, str] | None = None,
                mode: str = "L") -> str:
    """The family of the next generation, from the share of each family the bot read (`read`, families answered).

    The current family stays while the bot reads less than LEARNED of it (or its reading is
    unknown). Once learned, a family never answered whose every ingredient a learned family holds
    counts as read as much as that family (a bot that learned ink reads its noise). Then: the family
    the bot was never seen to read that shares fewest ingredients with what it learned (the earlier
    in FAMILIES' order on a tie), else the one it reads least: what it learned carries least there.
    A family the clean-up undoes on `mode`'s captchas (UNDONE) is never moved to.
    """
    families = FAMILIES if families is None else families
    if read.get(current, 0.0) < LEARNED:
        return current
    learned = [name for name, share in read.items() if share >= LEARNED]
    learned_ingredients = frozenset().union(*(_ingredients(name) for name in learned))

    def known(name: str) -> float | None:
        carriers = [read[other] for other in learned if _ingredients(name) <= _ingredients(other)]
        return read[name] if name in read else max(carriers, default=None)

    order = [name for name in families if name not in UNDONE[check_mode(mode)]]
    unseen = [name for name in order if known(name) is None]
    if unseen:
        return min(unseen, key=lambda name: (len(_ingredients(name) & learned_ingredients), order.index(name)))
    return min(order, key=lambda name: (known(name), order.index(name)))


def _ingredients(family: str) -> frozenset[str]:
    return INGREDIENTS.get(family, frozenset({family}))
