"""The attacker's toolbox on colour captchas: conversions to grey as bots make them, the implicit grey601, the colour chain set."""

import numpy as np
import pytest
import torch
from PIL import Image

from farm.core.preprocess import CHAINS, CONVERSIONS, colour_chains, parse_chain
from farm.core.colour import GREY, grey_array
from farm.core.model import to_tensor
from farm.core.preprocess.colour import most_contrast_channel
from farm.core.schemes import get_scheme
from farm.exceptions import SettingError
from farm.ops.evaluate import chain_accuracy, pool_report, sequence_accuracy

INK = torch.tensor([30, 110, 170]).view(1, 3, 1, 1) / 255  # a glyph colour the captcha package could draw
PAPER = torch.tensor([250, 240, 245]).view(1, 3, 1, 1) / 255  # a pale background, as the package's 238-255


def levels(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round().to(torch.uint8).numpy()


def random_rgb(height: int = 256, width: int = 1024, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) uniform random 8-bit colours: every rounding case a formula meets, many times."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, height, width), generator=generator).float() / 255


@pytest.fixture(scope="module")
def grey_captchas():
    """Four classic captchas in grey (BT.601), (4, 1, 60, 160), and their texts."""
    samples = [get_scheme("classic").sample(i) for i in range(4)]
    return to_tensor([grey_array(s.image) for s in samples]), [s.text for s in samples]


@pytest.fixture(scope="module")
def colour_captchas(grey_captchas):
    """The same captchas in colour: ink where the grey is dark, paper where light, on 8-bit levels."""
    grey, texts = grey_captchas
    rgb = grey * PAPER + (1 - grey) * INK  # (4, 1, H, W) * (1, 3, 1, 1) -> (4, 3, H, W)
    noise = (torch.rand(rgb.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 8 / 255
    return (rgb + noise).clamp(0, 1).mul(255).round().div(255), texts


def test_grey601_is_pils_convert_L_exactly():
    x = random_rgb()
    ours = levels(parse_chain("grey601").apply(x))[0, 0]
    pil = np.asarray(Image.fromarray(levels(x)[0].transpose(1, 2, 0)).convert("L"))
    assert np.array_equal(ours, pil)


def test_value_and_saturation_are_pils_hsv_with_saturation_inverted():
    high, low = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")  # every (max, min) pair S depends on
    keep = low <= high
    pairs = np.stack([high[keep], low[keep], (high[keep] + low[keep]) // 2], -1).astype(np.uint8)
    rgb = np.concatenate([pairs, pairs[:, [2, 0, 1]], levels(random_rgb(64, 1024))[0].reshape(3, -1).T])[None]
    x = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).float() / 255  # (1, H, W, 3) -> (1, 3, 1, N)
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"))
    assert np.array_equal(levels(parse_chain("value").apply(x))[0, 0], hsv[..., 2])
    assert np.array_equal(levels(parse_chain("saturation").apply(x))[0, 0], 255 - hsv[..., 1])


def test_grey709_and_mean_round_halves_up_on_8bit_levels():
    x = random_rgb(64, 256)
    rgb = levels(x)[0].astype(np.float64)
    luma = np.floor(np.tensordot(np.array(GREY["bt709"]), rgb, 1) + 0.5)
    assert np.array_equal(levels(parse_chain("grey709").apply(x))[0, 0], luma)
    assert np.array_equal(levels(parse_chain("mean").apply(x))[0, 0], np.floor(rgb.mean(0) + 0.5))


def test_channel_picks_the_channel_otsu_splits_best_not_the_noisiest():
    generator = torch.Generator().manual_seed(3)
    red = (128 + 50 * torch.randn(1, 1, 40, 100, generator=generator)).clamp(0, 255)  # std 50, nothing to split
    green = torch.full((1, 1, 40, 100), 200.0)
    green[..., :4, :] = 50  # 10% ink, 150 levels darker: std 45, but two classes
    blue = torch.full((1, 1, 40, 100), 220.0)
    x = torch.cat([red, green, blue], 1).round() / 255
    assert red.std() > green.std() and most_contrast_channel(x).tolist() == [1]
    chain = parse_chain("channel")
    assert torch.equal(chain.apply(x), x[:, 1:2]) and torch.equal(chain.forward(x), x[:, 1:2])
    both = torch.cat([x, x[:, [1, 0, 2]]])  # per image: the second has the split in red
    assert most_contrast_channel(both).tolist() == [1, 0]


@pytest.mark.parametrize("conversion", CONVERSIONS)
def test_conversions_make_one_grey_channel_with_ink_dark(colour_captchas, grey_captchas, conversion):
    x, _ = colour_captchas
    ink = grey_captchas[0] < 0.5
    for out in (parse_chain(conversion).apply(x), parse_chain(conversion).forward(x)):
        assert out.shape == (4, 1, 60, 160) and 0 <= out.min() and out.max() <= 1 + 1e-6
        assert out[ink].mean() < out[~ink].mean() - 0.1


@pytest.mark.parametrize("conversion", CONVERSIONS)
def test_conversion_stand_ins_match_the_real_ones_and_pass_a_gradient(colour_captchas, conversion):
    x, _ = colour_captchas
    chain = parse_chain(conversion)
    rounding = 1 if conversion == "saturation" else 0.5  # PIL truncates S; the other real ones round
    assert (chain.forward(x) - chain.apply(x)).abs().max() <= rounding / 255 + 1e-6
    x = x.clone().requires_grad_()
    chain.forward(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("conversion", CONVERSIONS)
def test_every_conversion_of_a_grey_image_is_the_image(grey_captchas, conversion):
    x, _ = grey_captchas
    assert torch.equal(parse_chain(conversion).apply(x), x) and torch.equal(parse_chain(conversion).forward(x), x)


@pytest.mark.parametrize("name", ["none", "otsu", "median3>otsu>open3"])
def test_a_colour_image_meets_grey601_when_its_chain_names_no_conversion(colour_captchas, name):
    x, _ = colour_captchas
    explicit = parse_chain("grey601" if name == "none" else f"grey601>{name}")
    assert torch.equal(parse_chain(name).apply(x), explicit.apply(x))
    assert torch.equal(parse_chain(name).forward(x), explicit.forward(x))


def test_none_on_colour_is_what_pil_loads_by_default(colour_captchas):
    x, _ = colour_captchas
    pil = np.stack([np.asarray(Image.fromarray(image.transpose(1, 2, 0)).convert("L")) for image in levels(x)])
    assert np.array_equal(levels(parse_chain("none").apply(x))[:, 0], pil)


def test_a_conversion_after_the_first_step_is_refused_naming_it():
    with pytest.raises(SettingError, match="^chain: 'otsu>saturation': saturation converts colour to grey and must "
                                           "be the first step; write saturation>otsu"):
        parse_chain("otsu>saturation")
    with pytest.raises(SettingError, match="'value>otsu>grey601': grey601 .* a chain converts once: drop value or grey601"):
        parse_chain("value>otsu>grey601")
    assert [s.name for s in parse_chain("saturation>otsu").steps] == ["saturation", "otsu"]


def test_images_of_another_channel_count_are_refused():
    with pytest.raises(SettingError, match=r"^images: shape \(2, 4, 8, 8\); .*\(B, 3, H, W\) RGB"):
        parse_chain("otsu").apply(torch.rand(2, 4, 8, 8))


def test_the_colour_chain_set_is_every_conversion_alone_and_before_every_chain():
    chains = colour_chains()
    assert len(chains) == len(set(chains)) == len(CONVERSIONS) * (len(CHAINS) + 1)
    for conversion in CONVERSIONS:
        assert conversion in chains and all(f"{conversion}>{chain}" in chains for chain in CHAINS)
    assert colour_chains(["otsu", "value>otsu", "none"]) == (
        "grey601", "grey601>otsu", "grey709", "grey709>otsu", "mean", "mean>otsu", "channel", "channel>otsu",
        "saturation", "saturation>otsu", "value", "value>otsu")


def test_reading_after_shared_conversions_is_reading_after_each_chain_alone(substitute, colour_captchas):
    x, texts = colour_captchas
    chains = ["none", "otsu", "value", "value>otsu", "saturation>thr200", "grey709>median3>otsu"]
    shared = chain_accuracy({"substitute": substitute}, texts, x, chains)["substitute"]
    alone = {c: round(sequence_accuracy(substitute.read(parse_chain(c).apply(x)), texts), 4) for c in chains}
    assert shared == alone and list(shared) == chains


def test_pool_report_on_colour_gives_each_solvers_worst_chain_per_conversion(substitute, colour_captchas):
    x, texts = colour_captchas
    records = [{"answer": t, "ssim": 0.9, "linf": 0.05} for t in texts]
    report = pool_report({"substitute": substitute}, {"substitute": "substitute"}, records, x, x,
                         ["none", "otsu", "thr200"])
    assert report["colour"] is True and report["conversions"] == list(CONVERSIONS)
    assert report["chains"] == list(colour_chains(["otsu", "thr200"]))
    row = report["accuracy"]["substitute"]
    assert list(row["adversarial"]) == ["none", *report["chains"]] and row["role"] == "substitute"
    for conversion, worst in row["worst_per_conversion"].items():
        mine = [c for c in report["chains"] if c.split(">")[0] == conversion]
        assert worst["chain"] in mine and worst["adversarial"] == max(row["adversarial"][c] for c in mine)
        assert worst["clean"] == row["clean"][worst["chain"]]
    assert row["worst"]["adversarial"] == max(w["adversarial"] for w in row["worst_per_conversion"].values())


def test_pool_report_on_grey_is_as_before(substitute, grey_captchas):
    x, texts = grey_captchas
    records = [{"answer": t, "ssim": 0.9, "linf": 0.05} for t in texts]
    report = pool_report({"substitute": substitute}, {"substitute": "substitute"}, records, x, x, ["none", "otsu"])
    assert set(report) == {"roles", "accuracy", "chains", "mean_ssim", "mean_ssim_glyph", "max_linf"}
    assert report["chains"] == ["otsu"] and set(report["accuracy"]["substitute"]) == {"clean", "adversarial", "role",
                                                                                        "worst"}
