"""The edge method (issue 25): dots on the glyphs' edges placed by the gradient, then momentum's noise."""

import dataclasses
import json

import pytest
import torch

from farm.core.colour import grey_array
from farm.core.model import to_tensor
from farm.core.preprocess import Chain

from farm.core.attacks.edge import COLOUR_PLACEMENT_CHAINS, PLACEMENT_CHAINS, edge_zones
from farm.core.attacks.methods import make_attack
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import perturb, render_shard

EPS = 16 / 255
FAST = {"steps": 2, "dots": 4, "eps": EPS}  # a few noise steps: what is tested is where the ink goes


@pytest.fixture(scope="module")
def shard():
    spec = PoolSpec.from_preset("edge", count=4, seed=5, **FAST).validate()
    return spec, render_shard(spec, 0, Seeds(b"edge-test"))


def test_the_dots_lie_only_on_the_glyphs_edges_and_the_rest_within_the_noise_budget(substitute, shard):
    spec, clean = shard
    for band in (1, 3):
        banded = PoolSpec.from_preset("edge", count=4, seed=5, band=band, **FAST).validate()
        adversarial = perturb(banded, clean, [substitute], 0)
        # ink, not noise, in any channel
        moved = abs(adversarial.astype(int) - clean.images.astype(int)).max(-1) > round(EPS * 255)
        _, reach = edge_zones(clean.glyphs, band, banded.dot_width)
        assert moved.any(axis=(1, 2)).all(), "every captcha has dots"
        assert not (moved & ~reach).any(), f"ink beyond {band} px off the glyphs plus a dot's radius"


def test_the_dots_are_cut_to_the_mask(substitute, shard):
    _, clean = shard
    images = to_tensor([grey_array(im) for im in clean.images])  # grey: set on grey classic
    glyphs = torch.from_numpy(clean.glyphs).unsqueeze(1)
    mask = torch.zeros_like(glyphs)
    mask[..., :, :80] = True  # the left half only
    attack = make_attack("edge", substitute, **FAST)
    adversarial = attack(images, clean.texts, mask, glyphs=glyphs)
    assert torch.equal(adversarial[~mask], images[~mask])
    assert (adversarial - images).abs().amax() > EPS + 1 / 255


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(substitute, shard):
    spec, clean = shard
    again = PoolSpec.from_preset("edge", count=4, seed=5, **FAST).validate()
    first = perturb(spec, clean, [substitute], 0)
    assert first.tobytes() == perturb(again, render_shard(again, 0, Seeds(b"edge-test")), [substitute], 0).tobytes()
    other = dataclasses.replace(clean, attack_seed=Seeds(b"edge-test").attack(6, 0))  # the draws of seed 6's shard
    assert first.tobytes() != perturb(spec, other, [substitute], 0).tobytes()


@pytest.mark.parametrize("bad,match", [
    ({"dots": 0}, "dots: must be at least 1"),
    ({"dot_width": 2.0}, r"dot-width: must be in \[3, 8\]"),
    ({"band": 0}, "band: must be 1 to 6"),
    ({"dots": 4, "dot_rounds": 5}, "dot-rounds: must be 1 to dots = 4"),
    ({"dot_samples": 0}, "dot-samples: .*at least 1"),
    ({"dot_placement": "anywhere"}, "dot-placement: must be one of gradient, random"),
])
def test_edge_settings_out_of_range_are_refused_by_name(substitute, bad, match):
    with pytest.raises(ValueError, match=match):
        make_attack("edge", substitute, **bad)
    with pytest.raises(ValueError, match=match):
        PoolSpec.from_preset("edge", count=4, **bad).validate()


def test_only_edge_takes_the_dot_settings_and_it_needs_the_glyphs(substitute, shard):
    with pytest.raises(ValueError, match="dots: only edge, warped_edge and generator take it, not momentum"):
        PoolSpec.from_preset("recommended", count=4, dots=3)
    _, clean = shard
    images = to_tensor([grey_array(im) for im in clean.images])  # grey: set on grey classic
    with pytest.raises(ValueError, match="glyphs: edge places its dots"):
        make_attack("edge", substitute, **FAST)(images, clean.texts)


def test_farm_generate_makes_an_edge_pool_into_a_folder_store(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from farm.cli import main
    from farm.storage.manifest import read_manifest
    from farm.storage.store import LocalStore

    monkeypatch.setenv("FARM_STORE", f"file://{tmp_path / 'store'}")
    result = CliRunner().invoke(main, ["generate", "--pool", "e", "--preset", "edge", "--count", "4", "--steps", "2",
                                       "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    store = LocalStore(tmp_path / "store")
    spec = read_manifest(store, "e")["spec"]
    assert spec["method"] == "edge" and spec["ensemble"] == ["crnn-b", "resnet-a"]
    assert spec["dots"] == 8 and spec["eps"] == 24 / 255 and spec["conversions"] == 0.5  # classic: colour values
    assert len(store.list("pools/e/images/")) == 4
    keys = [json.loads(line) for key in store.list("pools/e/keys/") for line in store.get(key).decode().splitlines()]
    assert {k["method"] for k in keys} == {"edge"} and len(keys) == 4


@pytest.mark.parametrize("on_grid", [True, False])
def test_the_glyph_tone_is_the_dark_quantile_of_each_captcha_and_channel(on_grid):
    from farm.core.attacks.edge import TONE_QUANTILE, glyph_tone
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (4, 3, 30, 40), generator=generator, dtype=torch.uint8).float().div_(255.0)
    if not on_grid:  # off the 8-bit grid (a perturbed image): the order statistics are found another way
        images = (images + torch.rand(images.shape, generator=generator) / 1000).clamp(0, 1)
    expected = torch.quantile(images.flatten(2), TONE_QUANTILE, dim=2)[..., None, None]
    tone = glyph_tone(images)
    assert tone.shape == (4, 3, 1, 1)
    torch.testing.assert_close(tone, expected, rtol=0, atol=1e-7)


def test_colour_dots_are_placed_through_the_conversions_bots_read_colour_with(substitute, shard, monkeypatch):
    """On colour the placement's gradients read 2-bit reduction after HSV value, the channel of most contrast and
    saturation, where the first colour default gave back most; grey captchas keep the grey chains (and their bytes)."""
    _, clean = shard
    read = []
    through = Chain.__call__
    monkeypatch.setattr(Chain, "__call__", lambda chain, x: read.append((chain.name, x.shape[1])) or through(chain, x))
    glyphs = torch.from_numpy(clean.glyphs).unsqueeze(1)
    attack = make_attack("edge", substitute, dot_rounds=2, dot_samples=6, **FAST)
    for images in (to_tensor(clean.images), to_tensor([grey_array(im) for im in clean.images])):
        attack(images, clean.texts, glyphs=glyphs)
    colour, grey = ({name for name, channels in read if channels == c} for c in (3, 1))
    assert colour <= set(COLOUR_PLACEMENT_CHAINS) and colour - set(PLACEMENT_CHAINS), colour
    assert grey and grey <= set(PLACEMENT_CHAINS), grey
