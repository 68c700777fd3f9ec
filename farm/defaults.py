"""`farm generate`'s defaults: the setting that transferred best to the zoo's donors.

Chosen with benchmarks/transfer.py on donor solvers only (held-out solvers report it, never
choose it): momentum with input diversity and smoothed (translation-invariant) gradients, every
step spent, 32/255 off the glyphs and 8/255 on them. PoolSpec's own defaults stay the plain
method of the paper. Kept apart from farm.pool so the CLI can show them without importing torch.
"""

GENERATE_DEFAULTS = {"method": "momentum", "mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255, "steps": 20,
                     "diversity": 0.7, "smoothing": 2.0, "early_stop": False}
