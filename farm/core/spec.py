"""A pool's spec: what it holds and how it is perturbed, checked before anything is written.

Stored in the manifest and sent to workers as JSON, so equal specs give byte-equal pools. Its
method's settings are those the method declares (farm.core.attacks.settings); a spec left to
defaults takes a preset's (farm.core.presets), as `farm generate` does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image

from farm.core.attacks.settings import DECLARED, declaration
from farm.core.presets import DEFAULT_PRESET, PRESET_FIELDS, expand
from farm.core.schemes import get_scheme, scheme_names
from farm.core.zoo import member
from farm.exceptions import SettingError

__all__ = ["PoolSpec", "FROM_PRESET", "MASKS", "FOLDER", "MAX_COUNT", "MAX_SHARD_SIZE", "MAX_SHARDS", "MAX_MARGIN"]

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


class _FromPreset:
    """The default of a field a preset fills: PoolSpec(...) replaces it when the spec is made."""

    def __repr__(self) -> str:
        return "<from the preset>"


FROM_PRESET = _FromPreset()

# The fields of the first manifests: a dict holding them all is a stored spec. A field added since (_ADDED_LATER)
# reads as what its pool was made with: the method's own default for a setting, None for the source.
_FIRST_FIELDS = frozenset({"count", "scheme", "method", "norm", "eps", "alpha", "steps", "mask", "margin", "seed",
                           "shard_size", "random_start", "smoothing", "diversity", "decay", "eps_glyph", "ensemble"})
_ADDED_LATER = ("early_stop", "source", "samples", "displacement", "displacement_step", "grid_rows", "grid_cols",
                "dots", "dot_width", "band", "dot_rounds", "dot_samples", "dot_placement", "conversions")


def scheme_mode(name) -> str:
    """What scheme `name` draws, "L" (grey) or "RGB" (colour); grey for a folder or an unknown name (validate
    names it)."""
    return get_scheme(name).mode if isinstance(name, str) and name in scheme_names() else "L"


@dataclass(frozen=True)
class PoolSpec:
    """What a pool holds and how it was perturbed. Stored in the manifest; equal specs give equal bytes.

    A field left out takes the recommended preset's value (farm.core.presets), as `farm generate`
    does on grey schemes, or, under another method, that method's own default: PoolSpec(count=n,
    scheme="classic_grey") is `farm generate --count n --scheme classic_grey` (on colour schemes
    `farm generate`'s default family is ink: PoolSpec.from_preset("edge", ...)). PoolSpec.from_preset
    names another preset and refuses a setting the method does not take; the constructor keeps one
    unused (so every stored spec reads back as it was). A setting the method does not take is None.
    """

    count: int
    scheme: str = "classic"
    method: str = FROM_PRESET  # none, direct, iterative, momentum, robust, warp or edge
    norm: str | None = FROM_PRESET
    eps: float | None = FROM_PRESET
    alpha: float | None = FROM_PRESET  # None: the method picks (2.5 eps / steps)
    steps: int | None = FROM_PRESET
    mask: str = FROM_PRESET  # full, background, glyph, strokes, or the path of a PNG (white = may change)
    margin: int = 1  # background mask: pixels this close to a glyph stay untouched
    seed: int = 0
    shard_size: int = 256
    random_start: bool | None = FROM_PRESET
    smoothing: float | None = FROM_PRESET  # transfer switches, see farm.core.attacks.settings
    diversity: float | None = FROM_PRESET
    decay: float | None = FROM_PRESET  # momentum and robust only
    eps_glyph: float | None = FROM_PRESET  # linf: a smaller budget on the glyphs (dilated by margin) than off them
    ensemble: tuple[str, ...] = FROM_PRESET  # zoo donors attacked together with the substitute (the preset's: none)
    early_stop: bool | None = FROM_PRESET  # stop a captcha once the substitute misreads it; off: spend every step
    source: str | None = None  # a platform's own captchas (farm.storage.folder) instead of a scheme; scheme is then "folder"
    samples: int | None = FROM_PRESET  # robust only
    displacement: float | None = FROM_PRESET  # warp only: pixels, its budget (it takes no mask, eps or eps_glyph)
    displacement_step: float | None = FROM_PRESET  # warp only, pixels
    grid_rows: int | None = FROM_PRESET  # warp only
    grid_cols: int | None = FROM_PRESET  # warp only
    dots: int | None = FROM_PRESET  # edge only: its dots on the glyphs' edges (farm.core.attacks.edge)
    dot_width: float | None = FROM_PRESET
    band: int | None = FROM_PRESET
    dot_rounds: int | None = FROM_PRESET
    dot_samples: int | None = FROM_PRESET
    dot_placement: str | None = FROM_PRESET
    conversions: float | None = FROM_PRESET  # colour captchas: bots' grey conversions in the attack's loop

    def __post_init__(self):
        unset = {f.name for f in fields(self) if getattr(self, f.name) is FROM_PRESET}
        if unset:
            given = {name: getattr(self, name) for name in PRESET_FIELDS if name not in unset}
            for name, value in expand(DEFAULT_PRESET, given, strict=False).items():
                if name in unset:
                    object.__setattr__(self, name, value)

    @classmethod
    def from_preset(cls, name: str = DEFAULT_PRESET, mode: str | None = None, **given) -> "PoolSpec":
        """The spec of preset `name` with `given` fields over it; ValueError for a setting the method does not take.

        `mode`: the captchas' (grey "L" or colour "RGB"), for a preset's colour values; by default the scheme's,
        grey for a --source folder (name its mode).
        """
        return cls(**{**given, **expand(name, given, mode=mode or scheme_mode(given.get("scheme", "classic")))})

    def validate(self) -> "PoolSpec":
        """The spec, or ValueError naming the first field out of range: nothing is written before this passes."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise SettingError(f"seed (--seed): must be a whole number from 0 to 2**64 - 1, a 64-bit seed for numpy's "
                               f"SeedSequence (got {self.seed!r})")
        self._check_types()
        if not 0 < self.count <= MAX_COUNT:
            raise SettingError(f"count: must be 1 to {MAX_COUNT:_} a pool (got {self.count:_}); a pool is "
                               f"refilled as it is served (`farm pool refill`), so it never needs more")
        if not 0 < self.shard_size <= MAX_SHARD_SIZE:
            raise SettingError(f"shard-size: must be 1 to {MAX_SHARD_SIZE} (got {self.shard_size}); a shard is "
                               f"rendered and attacked in memory at once")
        if self.shards > MAX_SHARDS:
            raise SettingError(f"shard-size: {self.count:_} captchas in shards of {self.shard_size} are "
                               f"{self.shards:_} shards, over the limit of {MAX_SHARDS:_}; use --shard-size "
                               f"{math.ceil(self.count / MAX_SHARDS)} or more")
        if not 0 <= self.margin <= MAX_MARGIN:
            raise SettingError(f"margin: must be 0 to {MAX_MARGIN} pixels (got {self.margin}); at {MAX_MARGIN} "
                               f"little of a captcha is left off the glyphs to perturb")
        if self.source is None:
            get_scheme(self.scheme)
        elif self.scheme != FOLDER:
            raise SettingError(f"scheme: a pool of a source folder has scheme {FOLDER!r} (got {self.scheme!r})")
        elif self.mask not in MASKS:
            raise SettingError("mask: a pool of a source folder takes full, background, glyph or strokes "
                               "(give glyph masks as <image>.mask.png in the folder)")
        declared = declaration(self.method)
        declared.check(self.attack_settings(), self.method)  # the attack owns its settings' ranges
        declared.check_pool(self.mask, self.eps_glyph, self.method)  # warp takes no mask and no glyph budget
        if self.mask not in MASKS:
            self.user_mask()  # raises when unreadable or of the wrong size
        if self.eps_glyph is not None and (self.norm != "linf" or not 0 <= self.eps_glyph <= self.eps):
            raise SettingError(f"eps-glyph: needs norm linf and 0 <= eps-glyph <= eps (got {self.eps_glyph})")
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
                raise SettingError(f"{f.name.replace('_', '-')}: must be {what} (got {value!r})")

    def attack_settings(self) -> dict:
        """The settings the attack of `method` takes, as it declares them (perturb and validate read them)."""
        return {name: getattr(self, name) for name in declaration(self.method).names}

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
            raise SettingError(f"mask: {self.mask!r} is neither full, background, glyph nor a readable PNG ({e})") from e
        if image.size != (scheme.width, scheme.height):
            raise SettingError(f"mask: {self.mask} is {image.size[0]}x{image.size[1]}, "
                               f"the {scheme.name} scheme draws {scheme.width}x{scheme.height}")
        return np.asarray(image) > 127

    def to_dict(self) -> dict:
        """JSON-ready: the manifest holds exactly this."""
        data = asdict(self)
        data["ensemble"] = list(self.ensemble)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PoolSpec":
        """A spec from JSON: a stored one (manifest, job) reads back as written; a task's may leave fields out.

        A dict holding every field of the first manifests is a stored spec: a field added since
        reads as what its pool was made with (_ADDED_LATER). Fields left out of any other take the
        recommended preset's values, as PoolSpec(...) does; a dict naming a "preset" expands as
        from_preset. Unknown fields are ignored (a newer writer's), except beside a preset.
        """
        names = {f.name for f in fields(cls)}
        if "count" not in data:
            raise SettingError("spec: count is missing: how many captchas the pool holds")
        if "preset" in data:
            unknown = sorted(set(data) - names - {"preset"})
            if unknown:
                raise SettingError(f"spec: unknown field(s) {', '.join(unknown)}; known: preset, {', '.join(sorted(names))}")
            return cls.from_preset(data["preset"], **{k: _json(k, v) for k, v in data.items() if k != "preset"})
        values = {k: _json(k, v) for k, v in data.items() if k in names}
        if _FIRST_FIELDS <= values.keys():
            method = values["method"]
            declared = DECLARED.get(method) if isinstance(method, str) else None
            for name in _ADDED_LATER:
                if name not in values:
                    values[name] = declared[name].default if declared and name in declared else None
        return cls(**values)


def _json(name: str, value):
    """A field as PoolSpec holds it: the ensemble is a tuple (JSON has lists)."""
    return tuple(value) if name == "ensemble" and isinstance(value, list) else value
