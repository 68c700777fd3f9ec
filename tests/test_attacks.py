"""Every method fools the substitute within its budget, touches only masked pixels, stays in [0, 1]."""

import pytest
import torch

from farm.core.colour import grey_array
from farm.core.model import to_tensor

from farm.core.attacks import DECLARED
from farm.core.attacks.methods import METHODS, make_attack
from farm.core.spec import PoolSpec
from farm.ops.shard import render_shard
from farm.core.seeds import UNKEYED, Seeds

COUNT = 24
# The batch these assertions were set on, kept as it was (seeded as pools were before FARM_SECRET keyed them):
# the one-step L2 attack's drop at eps 1.5 ranges 0.21-0.46 across batches of 24, around the bar of 0.3.
BATCH_SEEDS = Seeds(b"", UNKEYED)


@pytest.fixture(scope="module")
def batch():
    clean = render_shard(PoolSpec(count=COUNT, mask="background", seed=11), 0, BATCH_SEEDS)
    images = to_tensor([grey_array(im) for im in clean.images])  # grey: set on grey classic
    return images, clean.texts, torch.from_numpy(clean.allowed).unsqueeze(1)


def accuracy(solver, images, texts):
    return sum(r == t for r, t in zip(solver.read(images), texts)) / len(texts)


def options(method):
    return {"robust": {"steps": 6, "samples": 2}, "direct": {}}.get(method, {"steps": 8})


@pytest.mark.parametrize("method", sorted(m for m in METHODS if DECLARED[m].masked
                                           and m not in ("edge", "warped_edge", "generator")))
# warp: tests/test_warp.py; edge's dots pass eps by design: tests/test_edge.py and tests/test_warped_edge.py;
# the generator needs a trained one
# and the glyphs, and is bounded in L-inf only: tests/test_generator.py
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 1.5)])
def test_each_method_lowers_accuracy_within_budget_and_mask(substitute, batch, method, norm, eps):
    images, texts, mask = batch
    attack = make_attack(method, substitute, eps=eps, norm=norm, **options(method))
    adversarial = attack(images, texts, mask)
    delta = (adversarial - images).flatten(1)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-4
    assert torch.equal(adversarial[~mask], images[~mask]), "pixels outside the mask changed"
    before, after = accuracy(substitute, images, texts), accuracy(substitute, adversarial, texts)
    assert before >= 0.8
    assert after <= before - 0.3, f"{method}/{norm}: {before:.2f} -> {after:.2f}"


def test_targeted_attack_makes_the_substitute_read_the_target(substitute, batch):
    images, texts, _ = batch
    targets = ["7777"] * len(texts)
    attack = make_attack("iterative", substitute, eps=32 / 255, steps=60, norm="linf")
    adversarial = attack(images[:8], texts[:8], None, targets=targets[:8])
    assert sum(r == "7777" for r in substitute.read(adversarial)) >= 5


def test_an_ensemble_sums_the_losses_of_several_substitutes(substitute, batch):
    images, texts, mask = batch
    single = make_attack("iterative", substitute, steps=4, early_stop=False)(images[:8], texts[:8], mask[:8])
    ensemble = make_attack("iterative", [substitute, substitute], steps=4, early_stop=False)(images[:8], texts[:8], mask[:8])
    # the same model twice doubles the gradient; sign steps are unchanged
    assert torch.equal(single, ensemble)


class Louder(torch.nn.Module):
    """A solver's model whose loss is `factor` times larger: the same reader, a steeper loss."""

    def __init__(self, model, factor):
        super().__init__()
        self.inner, self.factor = model, factor

    def forward(self, x):
        return self.inner(x)

    def loss(self, *args, **kwargs):
        return self.inner.loss(*args, **kwargs) * self.factor


def test_every_member_of_an_ensemble_steers_whatever_the_scale_of_its_loss(substitute, batch):
    from farm.core.checkpoint import Solver
    from farm.core.zoo_loading import load_donor

    images, texts, mask = (part[:8] for part in batch)
    donor = load_donor("crnn-b")
    loud = Solver(Louder(donor.model, 1000.0), donor.charset, donor.card)
    even = make_attack("direct", [substitute, donor])(images, list(texts), mask)
    skewed = make_attack("direct", [substitute, loud])(images, list(texts), mask)
    loud_alone = make_attack("direct", loud)(images, list(texts), mask)
    # summed as they come, the loud member would set nearly every sign step by itself
    assert (even != skewed).float().mean() < 1e-3
    assert (skewed != loud_alone).float().mean() > 0.05


def test_the_same_seed_perturbs_identically_and_another_seed_differently(substitute, batch):
    images, texts, mask = batch
    run = lambda seed: make_attack("iterative", substitute, steps=3, random_start=True, seed=seed)(  # noqa: E731
        images[:4], texts[:4], mask[:4])
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("bad,match", [({"eps": 0}, "eps"), ({"eps": 2}, "eps"), ({"norm": "l1"}, "norm"),
                                       ({"steps": 0}, "steps")])
def test_bad_arguments_name_the_parameter(substitute, bad, match):
    with pytest.raises(ValueError, match=match):
        make_attack("iterative", substitute, **bad)
    with pytest.raises(ValueError, match="method"):
        make_attack("fgsm-typo", substitute)


@pytest.mark.parametrize("method,bad,match", [
    ("iterative", {"alpha": -1}, r"alpha: .*\(0, eps\]"),
    ("iterative", {"alpha": 0}, r"alpha: .*\(0, eps\]"),
    ("iterative", {"alpha": 16 / 255}, r"alpha: .*\(0, eps\] = \(0, 0.03137\]"),
    ("momentum", {"diversity": 5}, r"diversity: .*\[0, 1\]"),
    ("momentum", {"smoothing": -3}, r"smoothing: .*\[0, 10\]"),
    ("momentum", {"decay": -1}, r"decay: .*\[0, 2\]"),
    ("momentum", {"decay": float("nan")}, r"decay: .*\[0, 2\]"),
    ("iterative", {"norm": "l2", "eps": 1e4}, r"eps: must be in \(0, 8\] for l2"),
    ("robust", {"samples": 0}, "samples: .*at least 1"),
])
def test_an_attack_refuses_settings_out_of_range_naming_the_range(substitute, method, bad, match):
    with pytest.raises(ValueError, match=match):
        make_attack(method, substitute, **bad)
    with pytest.raises(ValueError, match=match):  # what PoolSpec.validate calls, with no model at hand
        METHODS[method].check(**bad)


def test_the_edges_of_each_range_are_accepted(substitute):
    for settings in ({"alpha": 8 / 255}, {"diversity": 1.0}, {"smoothing": 10.0}, {"decay": 0.0},
                     {"norm": "l2", "eps": 8.0}, {"eps": 1.0}):
        METHODS["momentum"].check(**settings)
        assert make_attack("momentum", substitute, **settings)


def test_each_method_takes_the_settings_it_declares_and_refuses_others_by_name(substitute):
    for name, cls in METHODS.items():
        assert cls.settings is DECLARED[name]
        declared = cls.settings.defaults()
        attack = make_attack(name, substitute, **declared)
        assert all(getattr(attack, setting) == value for setting, value in declared.items() if value is not None)
    with pytest.raises(ValueError, match="steps: only iterative, momentum, robust, warp, edge, warped_edge and "
                                         "generator take it, not direct"):
        make_attack("direct", substitute, steps=3)
    with pytest.raises(ValueError, match="early-stop: only iterative, momentum, edge and warped_edge take it, "
                                         "not robust"):
        make_attack("robust", substitute, early_stop=True)
    with pytest.raises(ValueError, match="decay: only momentum, robust, edge, warped_edge and generator take it, "
                                         "not iterative"):
        METHODS["iterative"].check(decay=0.5)
