"""Anticipation: the farm adapts copies of its models on its own labelled pools, as a blocked operator adapts its bot.

An operator who keeps every label it bought learns every family in turn, and then no family is new
to it (benchmarks/arms_race.py --adaptive --remember: adapted on ink and geometry, crnn-aug reads
62% of geometry and 67% of noise). The farm holds unlimited labelled captchas of its own
generations, so it can do what the operator does: make `count` captchas of each family the bot
learned (pools `farm-own-<version>-<family>`, made with the family's preset by the version whose generation of
it the bot learned: the base for its own family, an ancestor's for a family learned rounds ago), adapt
a copy of the substitute and of each zoo donor in HARDENED on all of them (farm.ops.attacker.adapt,
the operator's recipe), and aim the next generation at those copies beside the substitute. With it,
bots adapted on 3,000 ink captchas read 7.2% and 6.8% of the next (geometry) generation, 21.2% and
22.8% without; in round 2, against operators who kept every label, 30.4% and 36.4% (crnn-aug,
transformer-a) of geometry aimed at copies hardened on ink and geometry, and 4.0% and 1.2% of warped_ink aimed
at them: benchmarks/arms_race.py --adaptive --remember --anticipate 3000. With warps that keep every glyph its own
(farm.core.identity): 15.6% and 15.2% of geometry in round 1, 1.6% of warped_ink in round 2 (crnn-aug); with
warped_ink's dots guarded too, each bot alone, 13.6% and 3.2% (transformer-a), 12.4% and 3.2% (crnn-aug), the
move 583-1073 s on 2 cores (its own pools render in the move's processes, FinetuneConfig.workers).

The copies are published as versions of their own, unpromoted and marked refused (a copy loses
about 14 points of clean accuracy and never serves as the substitute); the new version's card
names them in `hardened` with their sha256, and registry.load attaches them to the substitute it
loads, so every worker aims at them (farm.ops.shard.attack_solvers).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from farm.core.checkpoint import Solver, load_solver, read_solver_dir
from farm.core.defaults import FinetuneConfig
from farm.core.families import FAMILIES, card_family, family_preset
from farm.core.spec import PoolSpec, scheme_mode
from farm.core.zoo_loading import load_donor
from farm.ops.attacker import OPERATOR, adapt
from farm.ops.evaluate import scheme_accuracy
from farm.ops.shard import attack_solvers
from farm.ops.submit import generate_pool
from farm.storage import config as store_config
from farm.storage import registry
from farm.storage.manifest import read_manifest
from farm.storage.pools import pool_names
from farm.storage.store import Store

__all__ = ["HARDENED", "OWN_SEED", "made_with", "own_pool", "harden"]

log = logging.getLogger(__name__)

HARDENED = ("substitute", "crnn-b", "resnet-a")  # the substitute and the zoo donors the farm adapts copies of
OWN_SEED = 7_770_000  # the farm's own pools: far from any seed a platform's pools are likely to use


def made_with(store: Store, base: str, family: str, mode: str) -> str:
    """The version whose generation of `family` the bot learned: the newest in `base`'s lineage (base first) whose
    pools of a `mode` scheme are of that family; `base` when none is (a family the evidence alone shows learned)."""
    version, seen = base, set()
    while version is not None and version not in seen:
        seen.add(version)
        card = registry.card(store, version)
        if card_family(card, mode) == family:
            return version
        version = card.get("parent")
    return base


def own_pool(store: Store, base: str, family: str, count: int, scheme: str, substitute: Solver,
             processes: int = 1) -> str:
    """The farm's own labelled pool of `family`, made with the generation of it the bot learned (reused when
    complete) in `processes` (the move's render processes: most of a move's time is this pool, on a warp
    family): its name, `farm-own-<version>-<family>`.

    A family learned rounds ago was learned from that round's captchas, not from what `base` would make
    of it today; its pool is usually there already, made by that round's move. `substitute`: `base`'s.
    """
    version = made_with(store, base, family, scheme_mode(scheme))
    name = f"farm-own-{version}-{family}"
    if name in pool_names(store) and read_manifest(store, name).get("status") == "complete":
        return name
    maker = substitute if version == base else registry.load(store, version)
    spec = PoolSpec.from_preset(family_preset(family), mode=scheme_mode(scheme), count=count, scheme=scheme,
                                seed=OWN_SEED + list(FAMILIES).index(family)).validate()
    generate_pool(store, name, spec, attack_solvers(spec, maker), store_config.secret(store), progress=False,
                  processes=processes)
    return name


def harden(store: Store, base: str, substitute: Solver, families: list[str], count: int, scheme: str,
           recipe: FinetuneConfig = OPERATOR) -> dict:
    """Adapt copies of HARDENED on `count` own captchas of each family; publish them. Returns the card's `hardened`.

    {"on": {family: pool}, "copies": [{"of", "version", "sha256"}], "count", "seconds"}.
    """
    started = time.perf_counter()
    pools = {family: own_pool(store, base, family, count, scheme, substitute, max(1, recipe.workers))
             for family in families}
    copies = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in HARDENED:
            model = substitute if name == "substitute" else load_donor(name)
            adapt(model, store, list(pools.values()), count * len(pools), Path(tmp) / name, progress=False,
                  recipe=recipe)
            weights, card = read_solver_dir(Path(tmp) / name)
            clean = scheme_accuracy(load_solver(weights, card), [scheme], recipe.guard_count, seed=recipe.seed,
                                    workers=0)[scheme]  # what `farm checkpoint list` shows of it
            card["metrics"] = {"accuracy": {scheme: clean["accuracy"]}, "accuracy_count": clean["count"]}
            reason = (f"a copy of {name} hardened on the farm's own pools ({', '.join(pools)}): an attack target "
                      f"for the next generation, not a substitute (it reads clean captchas worse)")
            version = registry.publish(store, weights, {**card, "refused": reason, "copy_of": name, "family": None},
                                       parent=base, make_current=False, allow_charset_change=True,
                                       held_back="a hardened copy")
            copies.append({"of": name, "version": version, "sha256": card["sha256"]})
            log.info("anticipation: %s hardened on %s as %s", name, ", ".join(pools), version)
    return {"on": pools, "copies": copies, "count": count, "seconds": round(time.perf_counter() - started, 1)}
