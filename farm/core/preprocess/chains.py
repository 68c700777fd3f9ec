"""Clean-up chains as a bot composes them, written `step>step>step` (e.g. `median3>otsu>open3`).

A step is a family and an optional number: `jpeg50` is JPEG at quality 50, `blur` a blur of the
family's default sigma. Every step has two paths: `apply`, the real operation evaluation uses
(PIL's JPEG codec, exact thresholds), and `forward`, a differentiable stand-in for attacks.
`Chain.apply` rounds to 8 bits after each step, as a bot's uint8 pipeline (PIL, OpenCV) does.

Colour images (B, 3, H, W) meet a conversion to grey first (CONVERSIONS, from `colour`: luma by
BT.601 or BT.709, the channel mean, the channel of most contrast, HSV's saturation or value). One
rule: a chain given colour images whose first step is not a conversion, `none` included, starts
with `grey601`, which is what a bot gets by default (PIL's Image.convert("L")). A conversion
anywhere but first is refused; on grey images every conversion is the identity.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from farm.core.preprocess import colour, ops
from farm.exceptions import SettingError

__all__ = ["Step", "Chain", "Family", "FAMILIES", "CHAINS", "CONVERSIONS", "IMPLICIT_CONVERSION", "colour_chains",
           "random_conversion", "parse_step", "parse_chain", "parse_chains", "apply"]

Operation = Callable[[torch.Tensor], torch.Tensor]

# The clean-ups `farm evaluate --pool` and benchmarks/cleanup.py measure by default: each family
# alone at the settings bots use, and the chains bots build of them (denoise, threshold, tidy).
CHAINS = (
    "otsu", "thr100", "thr128", "thr160", "thr200", "adaptive15", "sauvola15",
    "median3>otsu", "median3>otsu>open3", "median3>otsu>close3", "blur1>otsu>close3", "otsu>open3", "otsu>close3",
    "blur1", "blur1>otsu", "bilateral5>otsu", "tv", "tv>otsu", "tv>sauvola",
    "jpeg90", "jpeg75", "jpeg50", "jpeg30", "jpeg50>otsu",
    "bits3", "bits2", "bits2>open3", "rescale0.5", "rescale0.75", "rescale0.5>otsu",
)


# Colour to grey, (B, 3, H, W) -> (B, 1, H, W): (real, differentiable). Each is a step of its own,
# only ever first; `colour_chains` puts every one before every clean-up.
_CONVERSIONS: dict[str, tuple[Operation, Operation]] = {
    "grey601": (colour.grey601_real, colour.grey601),
    "grey709": (colour.grey709_real, colour.grey709),
    "mean": (colour.mean_real, colour.mean),
    "channel": (colour.channel_real, colour.channel),
    "saturation": (colour.saturation_real, colour.saturation),
    "value": (colour.value_real, colour.value),
}
CONVERSIONS = tuple(_CONVERSIONS)
IMPLICIT_CONVERSION = "grey601"  # what a colour image meets when its chain names none: PIL's convert("L")


def random_conversion(x: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """With `probability`, one conversion of CONVERSIONS drawn from `generator` (its differentiable stand-in):
    an attack's expectation over the ways bots take colour to grey. Else `x` as it is."""
    if torch.rand(1, generator=generator).item() >= probability:
        return x
    name = CONVERSIONS[int(torch.randint(len(CONVERSIONS), (1,), generator=generator))]
    return _CONVERSIONS[name][1](x)


@dataclass(frozen=True)
class Step:
    """One operation: `apply` the real one (evaluation), `forward` a differentiable stand-in (attacks).

    `converts`: a conversion from colour to grey, which only a chain's first step may be.
    """

    name: str
    apply: Operation
    forward: Operation
    converts: bool = False


@dataclass(frozen=True)
class Chain:
    """Steps applied in order. Shape: (B, 1, H, W) or (B, 3, H, W) floats in [0, 1] -> (B, 1, H, W).

    Colour images whose chain does not start with a conversion (`none` included) are converted by
    grey601 first (IMPLICIT_CONVERSION); a conversion after the first step is refused.
    """

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self):
        late = [step.name for step in self.steps[1:] if step.converts]
        if late:
            first, rest = self.steps[0], ">".join(step.name for step in self.steps if not step.converts)
            fix = (f"a chain converts once: drop {first.name} or {late[0]}" if first.converts
                   else f"write {late[0]}>{rest}")
            raise SettingError(f"chain: {self.name!r}: {late[0]} converts colour to grey and must be the first step; "
                               f"{fix}")

    def split(self, in_colour: bool) -> tuple[Step | None, Chain]:
        """The conversion this chain starts with on colour (or grey) images, grey601 on colour if it names
        none (None on grey), and the chain of the steps after it: evaluation converts once for many chains."""
        if self.steps and self.steps[0].converts:
            return self.steps[0], Chain(self.name, self.steps[1:])
        if in_colour:
            return parse_step(IMPLICIT_CONVERSION), self
        return None, self

    def _steps(self, x: torch.Tensor) -> tuple[Step, ...]:
        conversion, rest = self.split(colour.is_colour(x))
        return rest.steps if conversion is None else (conversion, *rest.steps)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The real operations, each output rounded to 8 bits, without gradient."""
        with torch.no_grad():
            for step in self._steps(x):
                x = ops.to_levels(step.apply(x)).to(x.dtype) / 255
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The differentiable stand-ins, for an attack's graph."""
        for step in self._steps(x):
            x = step.forward(x)
        return x

    __call__ = forward


@dataclass(frozen=True)
class Family:
    """A kind of step: how its number reads, its default, and its two operations (x, number) -> x."""

    number: str  # what the number is and its range, e.g. "quality 1-100"; "" takes none
    default: float | None
    valid: Callable[[float], bool]
    real: Callable
    differentiable: Callable

    def usage(self, name: str) -> str:
        return f"{name}<{self.number}>" if self.number else name


def _integer(low: int, high: int, odd: bool = False) -> Callable[[float], bool]:
    return lambda v: v.is_integer() and low <= v <= high and (not odd or v % 2 == 1)


def _number(low: float, high: float) -> Callable[[float], bool]:
    return lambda v: low <= v <= high


def _fixed_threshold(x: torch.Tensor, level: float) -> torch.Tensor:
    return (ops.to_levels(x) > level).to(x.dtype)


def _same(operation) -> dict:
    """A family whose real operation is differentiable already."""
    return {"real": operation, "differentiable": operation}


_OTSU = Family("", None, lambda v: False, lambda x, _: ops.binarize(x).detach(), lambda x, _: ops.binarize(x))

FAMILIES: dict[str, Family] = {
    "otsu": _OTSU,
    "binarize": _OTSU,  # the name evaluation and zoo training used before chains
    "thr": Family("level 1-254 of 255", 128, _integer(1, 254), _fixed_threshold,
                  lambda x, level: ops.soft_threshold(x, level / 255)),
    "adaptive": Family("odd block 3-99", 15, _integer(3, 99, odd=True),
                       lambda x, b: ops.adaptive_real(x, int(b)), lambda x, b: ops.adaptive_differentiable(x, int(b))),
    "sauvola": Family("odd window 3-99", 15, _integer(3, 99, odd=True),
                      lambda x, w: ops.sauvola_real(x, int(w)), lambda x, w: ops.sauvola_differentiable(x, int(w))),
    "median": Family("odd size 3-15", 3, _integer(3, 15, odd=True), **_same(lambda x, k: ops.median(x, int(k)))),
    "open": Family("odd size 3-15", 3, _integer(3, 15, odd=True), **_same(lambda x, k: ops.opening(x, int(k)))),
    "close": Family("odd size 3-15", 3, _integer(3, 15, odd=True), **_same(lambda x, k: ops.closing(x, int(k)))),
    "blur": Family("sigma 0.1-10", 1.0, _number(0.1, 10), **_same(ops.blur)),
    "bilateral": Family("odd size 3-15", 5, _integer(3, 15, odd=True), **_same(lambda x, k: ops.bilateral(x, int(k)))),
    "tv": Family("weight 0.01-1", 0.1, _number(0.01, 1), ops.tv_real, ops.tv_differentiable),
    "jpeg": Family("quality 1-100", 50, _integer(1, 100), lambda x, q: ops.jpeg_real(x, int(q)),
                   lambda x, q: ops.jpeg_differentiable(x, int(q))),
    "bits": Family("depth 1-7", 3, _integer(1, 7), lambda x, d: ops.bits(x, int(d)).detach(),
                   lambda x, d: ops.bits(x, int(d))),
    "rescale": Family("factor 0.1-0.99", 0.5, _number(0.1, 0.99), **_same(ops.rescale)),
}

_STEP = re.compile(r"([a-z]+)(\d+(?:\.\d+)?)?")


def known_steps() -> str:
    return ", ".join([*(family.usage(name) for name, family in FAMILIES.items()), *CONVERSIONS])


def parse_step(text: str, chain: str | None = None) -> Step:
    """A step from its name, e.g. `jpeg50` or `grey601`; SettingError names it and lists the known steps."""
    if text in _CONVERSIONS:  # before the grammar: grey601 is no family `grey` at 601
        return Step(text, *_CONVERSIONS[text], converts=True)
    where = f" in {chain!r}" if chain is not None and chain != text else ""
    match = _STEP.fullmatch(text)
    family = FAMILIES.get(match.group(1)) if match else None
    if family is None:
        raise SettingError(f"chain: unknown step {text!r}{where}; known: {known_steps()} "
                           f"(join steps with '>', e.g. median3>otsu>open3)")
    name, written = match.groups()
    if written is not None and not family.number:
        raise SettingError(f"chain: {text!r}{where}: {name} takes no number; write {name}")
    value = family.default if written is None else written
    value = None if value is None else float(value)
    if value is not None and not family.valid(value):
        raise SettingError(f"chain: {text!r}{where}: out of range; write {family.usage(name)}")
    return Step(text, partial(_bound, family.real, value), partial(_bound, family.differentiable, value))


def _bound(operation, value: float | None, x: torch.Tensor) -> torch.Tensor:
    return operation(x, value)


def parse_chain(text: str) -> Chain:
    """A chain from `step>step>step` (spaces and case ignored); `none` is the image as it is."""
    if not isinstance(text, str) or not text.strip():
        raise SettingError("chain: empty; give steps joined by '>', e.g. median3>otsu>open3, or none")
    name = text.replace(" ", "").lower()
    if name == "none":
        return Chain(name, ())
    return Chain(name, tuple(parse_step(part, name) for part in name.split(">")))


def parse_chains(texts) -> list[Chain]:
    """Chains from their names, each once, in order."""
    chains = {}
    for text in texts:
        chain = parse_chain(text)
        chains.setdefault(chain.name, chain)
    return list(chains.values())


def colour_chains(chains=CHAINS) -> tuple[str, ...]:
    """The clean-ups measured on colour images: every conversion alone, then followed by each chain.

    A chain that names its conversion already is kept as it is, once; `none` is not a clean-up and
    is left out (on colour it is grey601, which is here alone).
    """
    out = {}
    for conversion in CONVERSIONS:
        out[conversion] = None
        for chain in parse_chains(chains):
            if chain.steps and chain.steps[0].converts:
                if chain.steps[0].name == conversion:
                    out[chain.name] = None
            elif chain.steps:
                out[f"{conversion}>{chain.name}"] = None
    return tuple(out)


def apply(name: str, x: torch.Tensor) -> torch.Tensor:
    """The real operations of a named chain ('none' returns x, or its grey601 if colour)."""
    return parse_chain(name).apply(x)
