"""The attacker's toolbox: real operations for evaluation, differentiable stand-ins for attacks, chains by name."""

import io
import json

import numpy as np
import pytest
import torch

from farm.core.colour import grey_array
from farm.core.model import to_tensor
from click.testing import CliRunner
from PIL import Image

from farm.cli import main
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.core.preprocess import CHAINS, FAMILIES, PREPROCESSING, apply, binarize, parse_chain, parse_chains
from farm.core.schemes import get_scheme

THRESHOLDS = ["otsu", "thr100", "thr128", "thr160", "thr200", "adaptive", "sauvola"]


@pytest.fixture(scope="module")
def captchas():
    """Four classic captchas with a perturbation-sized noise, (4, 1, 60, 160) on 8-bit levels."""
    scheme = get_scheme("classic")
    clean = to_tensor([grey_array(scheme.sample(i).image) for i in range(4)])  # grey: BT.601 of colour classic
    noise = (torch.rand(clean.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 16 / 255
    return (clean + noise).clamp(0, 1).mul(255).round().div(255)


def square(size: int = 11, value: float = 0.0) -> torch.Tensor:
    return torch.full((1, 1, size, size), value)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_step_keeps_shape_and_range(captchas, family):
    step = parse_chain(family).steps[0]
    for out in (step.apply(captchas), step.forward(captchas)):
        assert out.shape == captchas.shape and out.dtype == captchas.dtype
        assert 0 <= out.min() and out.max() <= 1 + 1e-6


@pytest.mark.parametrize("name", THRESHOLDS)
def test_thresholds_give_only_black_and_white(captchas, name):
    chain = parse_chain(name)
    for out in (chain.apply(captchas), chain.forward(captchas)):
        assert set(out.unique().tolist()) == {0.0, 1.0}


def test_otsu_separates_the_modes_of_a_bimodal_image():
    generator = torch.Generator().manual_seed(1)
    dark = 60 + 10 * torch.randn(1, 1, 20, 20, generator=generator)
    light = 200 + 10 * torch.randn(1, 1, 20, 20, generator=generator)
    image = torch.cat([dark, light], dim=-1).clamp(0, 255).round() / 255
    out = parse_chain("otsu").apply(image)
    assert (out[..., :20] == 0).all() and (out[..., 20:] == 1).all()


def test_opening_removes_a_speck_and_keeps_a_square_and_closing_fills_a_hole():
    speck = square()
    speck[..., 2, 2] = 1
    speck[..., 4:9, 4:9] = 1  # a 5x5 square
    opened = parse_chain("open3").apply(speck)
    assert opened[..., 2, 2] == 0 and (opened[..., 4:9, 4:9] == 1).all() and opened.sum() == 25
    holed = square(value=1.0)
    holed[..., 5, 5] = 0
    assert (parse_chain("close3").apply(holed) == 1).all()


def test_the_chain_grammar_reads_what_bots_compose():
    chain = parse_chain(" Median3 > otsu > open3 ")
    assert chain.name == "median3>otsu>open3" and [s.name for s in chain.steps] == ["median3", "otsu", "open3"]
    for text in ("blur1>otsu>close3", "tv>sauvola", "jpeg50>otsu", "rescale0.75", "none", *CHAINS):
        assert parse_chain(text).name == text.replace(" ", "").lower()
    assert parse_chain("none").steps == ()
    assert [c.name for c in parse_chains(["otsu", "jpeg50", "otsu"])] == ["otsu", "jpeg50"]
    x = torch.rand(2, 1, 12, 20)
    assert torch.equal(parse_chain("blur").apply(x), parse_chain("blur1").apply(x))  # a family's default number


@pytest.mark.parametrize("text, says", [
    ("median3>sharpen>otsu", ["unknown step 'sharpen'", "'median3>sharpen>otsu'", "known:", "otsu",
                              "jpeg<quality 1-100>", "sauvola<odd window 3-99>"]),
    ("median3>>otsu", ["unknown step ''"]),
    ("jpeg0", ["'jpeg0'", "jpeg<quality 1-100>"]),
    ("median4", ["'median4'", "median<odd size 3-15>"]),
    ("otsu5", ["otsu takes no number"]),
    ("", ["chain: empty"]),
])
def test_the_chain_grammar_refuses_unknown_steps_naming_them(text, says):
    with pytest.raises(ValueError, match="^chain: ") as error:
        parse_chain(text)
    for part in says:
        assert part in str(error.value)


@pytest.mark.parametrize("name", [*THRESHOLDS, "bits3", "jpeg50", "tv", "bilateral", "median3>otsu>open3"])
def test_differentiable_stand_ins_pass_a_gradient(captchas, name):
    x = captchas.clone().requires_grad_()
    parse_chain(name).forward(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_stand_ins_stay_close_to_the_real_operations(captchas, family):
    step = parse_chain(family).steps[0]
    assert (step.forward(captchas) - step.apply(captchas)).abs().mean() < 0.01


def test_the_real_jpeg_path_is_pils_round_trip(captchas):
    expected = []
    for image in captchas.mul(255).round().to(torch.uint8).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image[0]).save(buffer, format="JPEG", quality=75)
        expected.append(np.asarray(Image.open(buffer)))
    real = parse_chain("jpeg75").apply(captchas).mul(255).round().to(torch.uint8).numpy()[:, 0]
    assert np.array_equal(real, np.stack(expected))


def test_the_names_evaluation_used_before_chains_still_work(captchas):
    assert set(PREPROCESSING) == {"median3", "blur", "jpeg50", "binarize", "rescale"}
    assert torch.equal(apply("binarize", captchas), binarize(captchas))
    assert torch.equal(apply("none", captchas), captchas)


@pytest.mark.slow  # every zoo solver reads the pool three times: 25 s on a busy machine
def test_evaluate_reports_each_solver_after_each_chain_and_its_worst(store, substitute, monkeypatch):
    # a grey pool (a colour pool's report: tests/test_toolbox_colour.py)
    spec = PoolSpec(count=8, shard_size=8, method="none", scheme="lines")
    generate_pool(store, "tiny", spec, [substitute], b"test-secret-not-for-production", progress=False)
    monkeypatch.setenv("FARM_STORE", store.url)
    result = CliRunner().invoke(main, ["evaluate", "--pool", "tiny", "--json", "--chain", "otsu",
                                       "--chain", "median3>otsu>open3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["chains"] == ["otsu", "median3>otsu>open3"]
    assert report["roles"]["substitute"] == "substitute" and "held-out" in report["roles"].values()
    for name, row in report["accuracy"].items():
        assert row["role"] == report["roles"][name]
        assert set(row["clean"]) == set(row["adversarial"]) == {"none", "otsu", "median3>otsu>open3"}
        worst = row["worst"]
        assert worst["chain"] in report["chains"]
        assert worst["adversarial"] == max(row["adversarial"][c] for c in report["chains"])
        assert worst["clean"] == row["clean"][worst["chain"]]


def test_evaluate_refuses_an_unknown_chain_before_reading_the_pool(store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", store.url)
    result = CliRunner().invoke(main, ["evaluate", "--pool", "missing", "--chain", "otsu>sharpen"])
    assert result.exit_code != 0
    assert "--chain: unknown step 'sharpen'" in result.output and "known:" in result.output
