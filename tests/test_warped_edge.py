"""warped_edge (issue 26): warp's field first, then edge's dots on the edges of the glyphs where the warp moved them."""

import numpy as np
import torch

from farm.core.attacks.edge import edge_zones
from farm.core.attacks.methods import make_attack
from farm.core.attacks.warp import Warp
from farm.core.families import method_family
from farm.core.model import to_planes, to_tensor
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import perturb, render_shard

FAST = {"steps": 3, "dots": 4, "dot_rounds": 1, "dot_samples": 1}


def test_the_dots_go_on_the_edges_of_the_warped_glyphs(substitute):
    spec = PoolSpec.from_preset("warped_edge", count=4, seed=5, **FAST).validate()
    clean = render_shard(spec, 0, Seeds(b"warped-edge-test"))
    attack = make_attack("warped_edge", substitute, **spec.attack_settings(), seed=1)
    attack(to_tensor(clean.images), clean.texts, to_planes(clean.allowed), glyphs=to_planes(clean.glyphs))
    moved = torch.cat(attack.fields)
    assert moved.abs().amax() > 1  # the warp moved the captcha
    warped = (Warp.resample(to_planes(clean.glyphs).float(), moved)[:, 0] > 0.5).numpy()
    ink = torch.cat(attack.ink)[:, 0].numpy() > 0.5
    _, reach_warped = edge_zones(warped, spec.band, spec.dot_width)
    _, reach_clean = edge_zones(clean.glyphs, spec.band, spec.dot_width)
    assert ink.any(axis=(1, 2)).all(), "every captcha has dots"
    assert not (ink & ~reach_warped).any(), "ink off the warped glyphs' edges"
    assert (ink & ~reach_clean).any(), "the dots followed the warp off where the clean glyphs were"


def test_a_warped_edge_pool_is_of_a_family_of_its_own_and_repeats_by_seed(substitute):
    spec = PoolSpec.from_preset("warped_edge", count=2, seed=5, **FAST).validate()
    clean = render_shard(spec, 0, Seeds(b"warped-edge-test"))
    first = perturb(spec, clean, [substitute], 0)
    assert first.tobytes() == perturb(spec, clean, [substitute], 0).tobytes()
    warped_only = perturb(PoolSpec.from_preset("warp", count=2, seed=5, steps=3).validate(), clean, [substitute], 0)
    assert not np.array_equal(first, warped_only) and not np.array_equal(first, clean.images)
    assert method_family("warped_edge") == "warped_ink"
