"""The attacker's toolbox: what bots do to a captcha before solving it, shared by attacks, evaluation and benchmarks.

`ops`: the operations as tensor functions on (B, 1, H, W) floats in [0, 1]; `chains`: the
`step>step>step` grammar, each step with its real operation (`apply`, for evaluation) and a
differentiable stand-in (`forward`, for attacks), and CHAINS, the clean-ups measured by default.
"""

from farm.core.preprocess.chains import CHAINS, FAMILIES, Chain, Step, apply, parse_chain, parse_chains, parse_step
from farm.core.preprocess.ops import binarize, blur, jpeg, median, otsu, rescale, shift

__all__ = ["median", "blur", "jpeg", "otsu", "binarize", "rescale", "shift", "PREPROCESSING", "apply",
           "CHAINS", "FAMILIES", "Chain", "Step", "parse_chain", "parse_chains", "parse_step"]

# the five preprocessings evaluation reported before chains, under their old names (benchmarks/transfer.py)
PREPROCESSING = {name: parse_chain(name).apply for name in ("median3", "blur", "jpeg50", "binarize", "rescale")}
