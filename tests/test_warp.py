"""`warp`, the geometric method: it moves pixels within its bound and adds none, fools the substitute,
is reproducible from its seed, refuses what does not apply to geometry, and makes pools end to end."""

import json
import math

import pytest
import torch

from farm.core.colour import grey_array
from farm.core.model import to_tensor
import torch.nn.functional as F

from farm.core.attacks.methods import make_attack
from farm.core.attacks.warp import OVERSHOOT
from farm.core.seeds import UNKEYED, Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import render_shard
from farm.ops.submit import generate_pool
from tests.test_generate import SECRET, run_farm


@pytest.fixture(scope="module")
def batch():
    clean = render_shard(PoolSpec(count=8, seed=11), 0, Seeds(b"", UNKEYED))
    return to_tensor([grey_array(im) for im in clean.images]), clean.texts  # grey: set on grey classic


def test_warp_moves_pixels_within_its_bound_and_adds_none(substitute, batch):
    images, texts = batch
    adversarial = make_attack("warp", substitute, displacement=1.0, steps=3)(images[:4], texts[:4])
    assert not torch.equal(adversarial, images[:4])
    # every pixel is a blend of clean pixels at most OVERSHOOT * 1 px (+1 for bilinear neighbours) away
    reach = math.ceil(OVERSHOOT * 1.0) + 1
    window = dict(kernel_size=2 * reach + 1, stride=1, padding=reach)
    darkest, lightest = -F.max_pool2d(-images[:4], **window), F.max_pool2d(images[:4], **window)
    assert (adversarial >= darkest - 1e-6).all() and (adversarial <= lightest + 1e-6).all()


def test_warp_lowers_the_substitutes_accuracy(substitute, batch):
    images, texts = batch
    adversarial = make_attack("warp", substitute, steps=10)(images, texts)
    before = sum(r == t for r, t in zip(substitute.read(images), texts)) / len(texts)
    after = sum(r == t for r, t in zip(substitute.read(adversarial), texts)) / len(texts)
    assert before >= 0.8 and after <= before - 0.3, f"{before:.2f} -> {after:.2f}"


def test_the_same_seed_gives_the_same_warp_and_another_seed_another(substitute, batch):
    images, texts = batch
    warp = lambda seed: make_attack("warp", substitute, steps=3, seed=seed)(images[:4], texts[:4])  # noqa: E731
    assert torch.equal(warp(7), warp(7))
    assert not torch.equal(warp(7), warp(8))  # the seed draws the input diversity


def test_a_warp_pool_is_byte_identical_for_the_same_secret_seed_and_settings(tmp_path, substitute):
    from farm.storage.store import LocalStore
    stores = [LocalStore(tmp_path / name) for name in "ab"]
    for store in stores:
        spec = PoolSpec.from_preset("warp", count=4, shard_size=2, steps=3).validate()
        generate_pool(store, "p", spec, [substitute], SECRET, progress=False, processes=1)
    keys = stores[0].list("pools/p/images/") + stores[0].list("pools/p/keys/")
    assert len(keys) == 4 + 2
    assert all(stores[0].get(key) == stores[1].get(key) for key in keys)


@pytest.mark.parametrize("given,message", [
    ({"eps": 8 / 255}, "eps: only direct, iterative, momentum, robust, edge, warped_edge "
     "and generator take it, not warp"),
    ({"norm": "l2"}, "norm: only direct, iterative, momentum, robust, edge, warped_edge "
     "and generator take it, not warp"),
    ({"smoothing": 2.0}, "smoothing: only direct, iterative, momentum, robust, edge, warped_edge "
     "and generator take it, not warp"),
    ({"mask": "background"}, "mask: warp moves the whole captcha and adds no pixel, so it takes mask full only"),
    ({"eps_glyph": 4 / 255}, "eps-glyph: warp adds no pixel, so it has no per-pixel budget"),
    ({"displacement": 9.0}, r"displacement: .*\(0, 8\] pixels"),
    ({"displacement_step": 4.0}, r"displacement-step: must be in \(0, displacement\] = \(0, 3\] pixels"),
    ({"grid_cols": 0}, "grid-cols: control points of the displacement field, must be 1 to 32"),
])
def test_a_setting_warp_does_not_take_is_refused_by_name(given, message):
    from workers.tasks import parse_shard
    with pytest.raises(ValueError, match=message):
        PoolSpec.from_preset("warp", count=8, **given).validate()
    with pytest.raises(ValueError, match=message):
        parse_shard("p", 0, 8, {"preset": "warp", "count": 8, **given})


def test_warp_takes_no_other_presets_mask_or_glyph_budget_and_other_methods_take_no_displacement():
    assert PoolSpec.from_preset("paper", count=8, method="warp").validate().mask == "full"
    recommended = PoolSpec(count=8, method="warp").validate()
    assert (recommended.mask, recommended.eps_glyph, recommended.eps, recommended.displacement) == \
        ("full", None, None, 3.0)
    with pytest.raises(ValueError, match="displacement: only warp and warped_edge take it, not momentum"):
        PoolSpec.from_preset("recommended", count=8, displacement=2.0)


def test_the_warp_attack_refuses_a_mask(substitute, batch):
    images, texts = batch
    mask = torch.ones_like(images[:2], dtype=torch.bool)
    mask[..., :10] = False
    with pytest.raises(ValueError, match="mask: warp moves the whole captcha"):
        make_attack("warp", substitute, steps=1)(images[:2], texts[:2], mask)


def test_farm_generate_preset_warp_makes_a_pool_farm_pool_stats_reads(tmp_path):
    assert "warp (warp, mask full)" in " ".join(run_farm(tmp_path, "generate", "--help").stdout.split())  # any wrap
    run_farm(tmp_path, "generate", "--pool", "w", "--preset", "warp", "--count", "4", "--shard-size", "2",
             "--steps", "4", "--no-progress")
    stats = json.loads(run_farm(tmp_path, "pool", "stats", "w", "--json").stdout)
    assert stats["complete"] == 4 and stats["status"] == "complete" and 0 < stats["mean_ssim"] < 1
    manifest = json.loads((tmp_path / "store/pools/w/manifest.json").read_text())
    assert manifest["spec"]["method"] == "warp" and manifest["spec"]["displacement"] == 3.0
    refused = run_farm(tmp_path, "generate", "--pool", "x", "--preset", "warp", "--count", "4", "--eps-glyph",
                       "4/255", check=False)
    assert refused.returncode != 0 and "eps-glyph: warp adds no pixel" in refused.stderr
    assert not (tmp_path / "store/pools/x").exists()
