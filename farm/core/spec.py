"""A pool's spec: what it holds and how it is perturbed, checked before anything is written.

Stored in the manifest and sent to workers as JSON, so equal specs give byte-equal pools.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image

from farm.core.attacks import METHODS, NORMS
from farm.core.schemes import get_scheme
from farm.core.zoo import member

__all__ = ["PoolSpec", "MASKS", "FOLDER", "MAX_COUNT", "MAX_SHARD_SIZE", "MAX_SHARDS", "MAX_MARGIN"]

MASKS = ("full", "background", "glyph", "strokes")

FOLDER = "folder"  # the scheme of a pool perturbing a platform's own captchas

# A pool is refilled as it is served (farm.ops.refill), so it never needs to hold years of traffic;
# 10^8 captchas are already ~350 GB of PNGs and keys, and a count beyond it is a typo.
MAX_COUNT = 10**8

# A shard is rendered and attacked whole, ~30 bytes a pixel (uint8 images and masks, float32 copies
# in the attack): 8192 captchas of 192x64 take ~3 GB. The benchmarks' largest shard is 5000.
MAX_SHARD_SIZE = 8192

# The manifest and a job list shards, and `farm generate` the pending ones: a million entries is
# ~80 MB of JSON. At the default shard size (256) a pool of MAX_COUNT has 390 625 shards.
MAX_SHARDS = 10**6

# Pixels kept clear around the glyphs (background mask, and the glyph budget's region). Measured on
# 20 classic captchas: 77% of the image is left to perturb at 1, 38% at 8, 14.5% at 16; beyond that
# there is next to nothing off the glyphs, and the dilation only grows slower.
MAX_MARGIN = 16

# JSON types a field of a spec accepts (a task's spec is JSON): a string where a number belongs is refused by name
_FIELD_TYPES = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
                "str": ((str,), "text")}

@dataclass(frozen=True)
class PoolSpec:
    """What a pool holds and how it was perturbed. Stored in the manifest; equal specs give equal bytes."""

    count: int
    scheme: str = "classic"
    method: str = "iterative"
    norm: str = "linf"
    eps: float = 8 / 255
    alpha: float | None = None
    steps: int = 10
    mask: str = "background"  # full, background, glyph, strokes, or the path of a PNG (white = may change)
    margin: int = 1  # background mask: pixels this close to a glyph stay untouched
    seed: int = 0
    shard_size: int = 256
    random_start: bool = False
    smoothing: float = 0.0  # transfer switches, see farm.core.attacks.base.Attack
    diversity: float = 0.0
    decay: float = 1.0  # momentum and robust only
    eps_glyph: float | None = None  # linf: a smaller budget on the glyphs (dilated by margin) than off them
    ensemble: tuple[str, ...] = ()  # zoo donors attacked together with the substitute
    early_stop: bool = True  # stop a captcha once the substitute misreads it; off: spend every step (transfers)
    source: str | None = None  # a platform's own captchas (farm.storage.folder) instead of a scheme; scheme is then "folder"

    def validate(self) -> "PoolSpec":
        """The spec, or ValueError naming the first field out of range: nothing is written before this passes."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ValueError(f"seed (--seed): must be a whole number from 0 to 2**64 - 1, a 64-bit seed for numpy's "
                             f"SeedSequence (got {self.seed!r})")
        self._check_types()
        if not 0 < self.count <= MAX_COUNT:
            raise ValueError(f"count: must be 1 to {MAX_COUNT:_} a pool (got {self.count:_}); a pool is "
                             f"refilled as it is served (`farm pool refill`), so it never needs more")
        if not 0 < self.shard_size <= MAX_SHARD_SIZE:
            raise ValueError(f"shard-size: must be 1 to {MAX_SHARD_SIZE} (got {self.shard_size}); a shard is "
                             f"rendered and attacked in memory at once")
        if self.shards > MAX_SHARDS:
            raise ValueError(f"shard-size: {self.count:_} captchas in shards of {self.shard_size} are "
                             f"{self.shards:_} shards, over the limit of {MAX_SHARDS:_}; use --shard-size "
                             f"{math.ceil(self.count / MAX_SHARDS)} or more")
        if not 0 <= self.margin <= MAX_MARGIN:
            raise ValueError(f"margin: must be 0 to {MAX_MARGIN} pixels (got {self.margin}); at {MAX_MARGIN} "
                             f"little of a captcha is left off the glyphs to perturb")
        if self.source is None:
            get_scheme(self.scheme)
        elif self.scheme != FOLDER:
            raise ValueError(f"scheme: a pool of a source folder has scheme {FOLDER!r} (got {self.scheme!r})")
        elif self.mask not in MASKS:
            raise ValueError("mask: a pool of a source folder takes full, background, glyph or strokes "
                             "(give glyph masks as <image>.mask.png in the folder)")
        if self.method != "none" and self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; known: none, {', '.join(METHODS)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm: must be one of {', '.join(NORMS)} (got {self.norm!r})")
        if self.method != "none":
            METHODS[self.method].check(**self.attack_settings())  # the attack owns its settings' ranges
        if self.mask not in MASKS:
            self.user_mask()  # raises when unreadable or of the wrong size
        if self.eps_glyph is not None and (self.norm != "linf" or not 0 <= self.eps_glyph <= self.eps):
            raise ValueError(f"eps-glyph: needs norm linf and 0 <= eps-glyph <= eps (got {self.eps_glyph})")
        if self.ensemble:
            for name in self.ensemble:
                member(name)
        return self

    def _check_types(self) -> None:
        for f in fields(self):
            value, (kinds, what) = getattr(self, f.name), _FIELD_TYPES.get(f.type.removesuffix(" | None"), (None, ""))
            if kinds is None or (value is None and f.type.endswith(" | None")):
                continue
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"{f.name.replace('_', '-')}: must be {what} (got {value!r})")

    def attack_settings(self) -> dict:
        """The settings of this spec that the attack of `method` checks and takes (perturb and validate read them)."""
        settings = {"eps": self.eps, "norm": self.norm, "alpha": self.alpha, "steps": self.steps,
                    "smoothing": self.smoothing, "diversity": self.diversity}
        if self.method in ("momentum", "robust"):
            settings["decay"] = self.decay
        return settings

    @property
    def shards(self) -> int:
        return math.ceil(self.count / self.shard_size)

    def indices(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.count, (shard + 1) * self.shard_size))

    def user_mask(self) -> np.ndarray:
        scheme = get_scheme(self.scheme)
        try:
            image = Image.open(self.mask).convert("L")
        except (OSError, ValueError) as e:
            raise ValueError(f"mask: {self.mask!r} is neither full, background, glyph nor a readable PNG ({e})") from e
        if image.size != (scheme.width, scheme.height):
            raise ValueError(f"mask: {self.mask} is {image.size[0]}x{image.size[1]}, "
                             f"the {scheme.name} scheme draws {scheme.width}x{scheme.height}")
        return np.asarray(image) > 127

    def to_dict(self) -> dict:
        """JSON-ready: the manifest holds exactly this."""
        data = asdict(self)
        data["ensemble"] = list(self.ensemble)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PoolSpec":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "ensemble" in values:
            values["ensemble"] = tuple(values["ensemble"])
        return cls(**values)
