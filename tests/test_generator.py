"""The perturbation generator: bounded like the default, reproducible, a perturbation per code, safetensors only."""

import numpy as np
import pytest
import torch

from farm.core.attacks.methods import make_attack
from farm.core.checkpoint import load_solver
from farm.core.generator import GeneratorConfig, PerturbationGenerator, draw_codes, perturb_captchas
from farm.core.zoo_loading import load_member
from farm.exceptions import CheckpointError, HeldOutError, SettingError
from farm.ops.generator_training import GeneratorTraining, load_generator_dir, save_generator_dir, train_generator
from farm.storage import registry

H, W = 60, 160


def _captchas(n=3, seed=0):
    """Grey captchas with a block of 'glyphs', a two-level budget (8/255 on them, 32/255 off) and a mask."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, H, W), dtype=np.uint8)
    glyphs = np.zeros((n, H, W), bool)
    glyphs[:, 20:40, 30:120] = True
    budget = np.where(glyphs, 8 / 255, 32 / 255)
    allowed = np.ones((n, H, W), bool)
    allowed[:, :, :10] = False  # somewhere the attack may not act
    return images, glyphs, allowed, budget


def _generator(seed=0, gain=50.0):
    torch.manual_seed(seed)  # a large gain saturates the tanh: the budget is reached, and must hold
    return PerturbationGenerator(GeneratorConfig(gain=gain))


def test_perturbation_stays_within_the_two_level_budget_and_the_mask():
    images, glyphs, allowed, budget = _captchas()
    adv = perturb_captchas(_generator(), images, glyphs, allowed, budget, seeds=[1, 2, 3])
    change = np.abs(adv.astype(int) - images.astype(int))
    assert (change[glyphs] <= 8).all() and (change[~glyphs] <= 32).all()
    assert (change[~allowed] == 0).all()
    assert change[~glyphs & allowed].max() == 32  # the budget is there to be used


def test_same_seed_same_perturbation_whatever_the_batch():
    images, glyphs, allowed, budget = _captchas()
    model = _generator()
    together = perturb_captchas(model, images, glyphs, allowed, budget, seeds=[1, 2, 3])
    again = perturb_captchas(model, images, glyphs, allowed, budget, seeds=[1, 2, 3], batch_size=1)
    assert np.array_equal(together, again)


def test_different_codes_give_different_perturbations():
    images, glyphs, allowed, budget = _captchas(n=1)
    model = _generator(gain=2.0)
    first, second = (perturb_captchas(model, images, glyphs, allowed, budget, seeds=[s]) for s in (1, 2))
    assert (first != second).mean() > 0.05
    assert not torch.equal(draw_codes([1], (H, W), 4), draw_codes([2], (H, W), 4))


def test_weights_round_trip_through_safetensors_and_are_checked(tmp_path):
    images, glyphs, allowed, budget = _captchas()
    model = _generator(seed=3, gain=2.0)
    card = save_generator_dir(model, tmp_path / "g", trained_against=["substitute"])
    assert card["trained_against"] == ["substitute"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["card.json", "model.safetensors"]
    loaded = load_generator_dir(tmp_path / "g")
    assert np.array_equal(perturb_captchas(model, images, glyphs, allowed, budget, [1, 2, 3]),
                          perturb_captchas(loaded, images, glyphs, allowed, budget, [1, 2, 3]))
    weights = (tmp_path / "g" / "model.safetensors").read_bytes()
    (tmp_path / "g" / "model.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="sha256"):
        load_generator_dir(tmp_path / "g")


def test_refinement_starts_from_the_given_images_and_keeps_the_budget():
    substitute = load_solver(*registry.bundled())
    images, glyphs, allowed, budget = _captchas(n=2)
    start = perturb_captchas(_generator(), images, glyphs, allowed, budget, seeds=[1, 2])
    attack = make_attack("momentum", [substitute], eps=32 / 255, steps=1, alpha=1 / 255, early_stop=False)
    as_tensor = lambda a: torch.from_numpy(a).unsqueeze(1).float()  # noqa: E731
    x = as_tensor(images) / 255
    refined = attack(x, ["ab12", "cd34"], as_tensor(allowed).bool(), budget=as_tensor(budget),
                     start=as_tensor(start) / 255)
    fresh = attack(x, ["ab12", "cd34"], as_tensor(allowed).bool(), budget=as_tensor(budget))
    change = (refined - x).abs().squeeze(1).numpy() * 255
    assert (change <= budget * 255 + 1e-3).all() and (change[~allowed] == 0).all()
    assert (refined - as_tensor(start) / 255).abs().max() <= 1 / 255 + 1e-6  # one step of alpha from the start
    assert (fresh - x).abs().max() <= 1 / 255 + 1e-6  # without a start, one step from the clean images


def test_training_refuses_a_held_out_solver():
    with pytest.raises(HeldOutError, match="crnn-aug"):
        train_generator([load_solver(*registry.bundled()), load_member("crnn-aug")], GeneratorTraining(steps=1))


def test_colour_captchas_are_refused_by_name():
    images, glyphs, allowed, budget = _captchas(2)
    colour = np.repeat(images[..., None], 3, axis=3)
    with pytest.raises(SettingError, match="reads grey captchas and these are in colour"):
        perturb_captchas(_generator(), colour, glyphs, allowed, budget, [1, 2])


def test_training_draws_grey_classic_and_refuses_a_colour_scheme_by_name():
    assert GeneratorTraining().scheme == "classic_grey"
    with pytest.raises(SettingError, match="scheme: classic draws in colour"):
        GeneratorTraining(scheme="classic").validate()
    with pytest.raises(SettingError, match="scheme: unknown scheme 'nope'"):
        GeneratorTraining(scheme="nope").validate()
