"""The attacker's toolbox: what bots do to a captcha before solving it, shared by attacks, evaluation and benchmarks.

`ops`: the operations as tensor functions on (B, 1, H, W) floats in [0, 1]; `colour`: the
conversions of (B, 3, H, W) RGB to grey a bot starts with (CONVERSIONS); `chains`: the
`step>step>step` grammar, each step with its real operation (`apply`, for evaluation) and a
differentiable stand-in (`forward`, for attacks), CHAINS, the clean-ups measured by default, and
`colour_chains`, those measured on colour images (every conversion alone and before each chain).
"""

from farm.core.preprocess.chains import (CHAINS, CONVERSIONS, FAMILIES, IMPLICIT_CONVERSION, Chain, Step, apply,
                                         colour_chains, parse_chain, parse_chains, parse_step,
                                         random_conversion)
from farm.core.preprocess.ops import binarize, blur, jpeg, median, otsu, rescale, shift

__all__ = ["median", "blur", "jpeg", "otsu", "binarize", "rescale", "shift", "PREPROCESSING", "apply",
           "CHAINS", "CONVERSIONS", "IMPLICIT_CONVERSION", "FAMILIES", "Chain", "Step", "colour_chains",
           "parse_chain", "parse_chains", "parse_step", "random_conversion"]

# the five preprocessings evaluation reported before chains, under their old names (benchmarks/transfer.py)
PREPROCESSING = {name: parse_chain(name).apply for name in ("median3", "blur", "jpeg50", "binarize", "rescale")}
