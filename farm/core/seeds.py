"""Where a pool's captchas come from: one seed per captcha, keyed by FARM_SECRET.

The pool seed is not secret: it sits in every manifest and defaults to 0. The secret is. The
scheme code is public, so a captcha rendered from the pool seed alone can be rendered again by
anyone, and the clean rendering nearest a served image gives its answer (an attacker tries
seeds 0, 1, 2, ...; the right rendering sits at exactly eps). Captcha `index` is therefore drawn
from HMAC-SHA256(FARM_SECRET, seed/stream/index): with the secret, the same seed gives the same
clean captchas index by index for every method (studies compare methods on them, a re-run shard
writes identical bytes, farm workers and the embedded mode agree); without it, nothing can be
rendered again. The attack's own draws are keyed the same way (Seeds.attack).

Each manifest records its pool's derivation. Pools written before it was keyed record none and
read as UNKEYED: they can still be previewed and evaluated, but never grown (farm.ops.submit).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from farm.core.schemes import captcha_seed
from farm.exceptions import SettingError

__all__ = ["KEYED", "UNKEYED", "Seeds", "derivation"]

KEYED = "hmac-sha256"  # HMAC-SHA256(FARM_SECRET, "captcha/<seed>/<stream>/<index>"), first 8 bytes
UNKEYED = "seed"  # before: numpy's SeedSequence of (seed, stream, index), which anyone can compute
POOL_STREAM = 4  # seed stream of pool captchas: apart from training, validation and evaluation


@dataclass(frozen=True)
class Seeds:
    """The per-captcha seeds of pools under one secret. The secret is kept out of repr (tracebacks, logs)."""

    secret: bytes = field(repr=False)
    derivation: str = KEYED

    def __post_init__(self):
        if self.derivation not in (KEYED, UNKEYED):
            raise ValueError(f"derivation: {self.derivation!r} is neither {KEYED!r} nor {UNKEYED!r}")
        if self.derivation == KEYED and not self.secret:
            raise SettingError("FARM_SECRET: empty; captchas keyed by an empty secret can be rendered by anyone")

    def captcha(self, seed: int, index: int) -> int:
        """The seed captcha `index` of a pool of seed `seed` is drawn from."""
        if self.derivation == UNKEYED:
            return captcha_seed(seed, index, POOL_STREAM)
        return self._keyed(f"captcha/{seed}/{POOL_STREAM}/{index}")

    def attack(self, seed: int, shard: int) -> int:
        """The seed of a shard's attack draws (input diversity, a placement's chains, a generator's codes), keyed as
        the captchas are: the perturbation's randomness is no more public than the captcha it lies on, so no one
        without the secret can draw a pool's codes and try them against a public generator."""
        if self.derivation == UNKEYED:
            return seed * 1_000_003 + shard
        return self._keyed(f"attack/{seed}/{shard}")

    def _keyed(self, message: str) -> int:
        return int.from_bytes(hmac.new(self.secret, message.encode(), hashlib.sha256).digest()[:8], "big")


def derivation(manifest: dict) -> str:
    """How a stored pool's captchas were seeded; a manifest from before keying says nothing: UNKEYED."""
    return manifest.get("derivation", UNKEYED)
