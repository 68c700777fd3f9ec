"""Transfer techniques change the perturbation but keep the budget and the mask; held-out solvers never serve."""

import copy

import pytest
import torch

from farm.exceptions import CheckpointError, HeldOutError
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_solvers, perturb, render_shard
from farm.core.seeds import Seeds
from farm.core.zoo import HELD_OUT, members
from farm.core.zoo_loading import load_donor

SEEDS = Seeds(b"test-secret-not-for-production")


@pytest.fixture(scope="module")
def shard():
    return render_shard(PoolSpec(count=8, shard_size=8, mask="background", seed=5), 0, SEEDS)


def run(spec_fields, shard, solvers):
    spec = PoolSpec.from_preset("paper", **{"count": 8, "shard_size": 8, "mask": "background", "seed": 5,
                                            "steps": 5, "method": "iterative", **spec_fields})
    return perturb(spec, render_shard(spec, 0, SEEDS), solvers, 0)


@pytest.mark.parametrize("technique", [{"smoothing": 1.5}, {"diversity": 1.0}, {"method": "momentum"},
                                       {"eps_glyph": 2 / 255, "mask": "full", "eps": 16 / 255}])
def test_each_technique_changes_the_perturbation_and_keeps_budget_and_mask(substitute, shard, technique):
    plain = run({"mask": technique.get("mask", "background"), "eps": technique.get("eps", 8 / 255)}, shard, [substitute])
    tuned = run(technique, shard, [substitute])
    assert (plain != tuned).any()
    delta = tuned.astype(int) - shard.images.astype(int)
    eps = round(technique.get("eps", 8 / 255) * 255)
    assert abs(delta).max() <= eps
    if technique.get("mask", "background") == "background":
        assert (delta[~shard.allowed] == 0).all()
    if "eps_glyph" in technique:
        from farm.core.measures import glyph_region
        region = glyph_region(shard.glyphs, 1)
        assert abs(delta[region]).max() <= 2 and abs(delta[~region]).max() > 2


def test_an_ensemble_of_different_models_changes_the_perturbation(substitute, shard):
    other = copy.deepcopy(substitute)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    alone = run({}, shard, [substitute])
    together = run({}, shard, [substitute, other])
    assert (alone != together).any()
    assert abs(together.astype(int) - shard.images.astype(int)).max() <= 8


def test_held_out_solvers_are_never_loaded_as_substitutes(substitute):
    held_out = [m.name for m in members(HELD_OUT)]
    assert held_out, "the zoo must hold solvers out"
    for name in held_out:
        with pytest.raises(HeldOutError, match="held out"):
            load_donor(name)
        spec = PoolSpec(count=4, ensemble=(name,)).validate()
        with pytest.raises(HeldOutError):
            attack_solvers(spec, substitute)


def test_donors_a_versions_card_names_join_every_pool_of_it_once(substitute, tmp_path):
    import dataclasses
    named = dataclasses.replace(substitute, card={**substitute.card, "ensemble": ["resnet-a"]})
    solvers = attack_solvers(PoolSpec(count=4, ensemble=("crnn-b", "resnet-a")).validate(), named)
    assert [s.card["zoo"]["name"] for s in solvers[1:]] == ["crnn-b", "resnet-a"] and solvers[0] is named
    assert len(attack_solvers(PoolSpec(count=4), named)) == 2
    from farm.ops.submit import generate_pool
    from farm.storage.store import LocalStore
    spec = PoolSpec(count=2, shard_size=2, steps=2).validate()
    summary = generate_pool(LocalStore(tmp_path), "named", spec, attack_solvers(spec, named), b"s", progress=False)
    assert summary["donors"] == ["resnet-a"] and summary["generated"] == 2
    for bad in ("resnet-a", [3], ["resnet-z"]):  # a foreign card: a string, not names, an unknown name
        with pytest.raises(CheckpointError, match="ensemble"):
            attack_solvers(PoolSpec(count=4), dataclasses.replace(substitute, card={**substitute.card, "ensemble": bad}))
    with pytest.raises(HeldOutError):
        attack_solvers(PoolSpec(count=4), dataclasses.replace(substitute, card={**substitute.card, "ensemble": ["crnn-aug"]}))


def test_a_card_naming_donors_no_worker_could_load_is_never_published(store, substitute):
    from farm.storage import registry
    from farm.core.checkpoint import build_card, weights_bytes
    weights = weights_bytes(substitute.model)
    for bad, error in ((["resnet-z"], CheckpointError), (["transformer-a"], HeldOutError)):
        with pytest.raises(error, match="ensemble"):
            registry.publish(store, weights, build_card(substitute.model, substitute.charset, weights, ensemble=bad))
    assert registry.current(store) is None
    version = registry.publish(store, weights, build_card(substitute.model, substitute.charset, weights,
                                                          ensemble=["resnet-a"]))
    assert registry.card(store, version)["ensemble"] == ["resnet-a"]


def test_held_out_cards_cannot_be_published_as_checkpoints(store, substitute):
    from farm.storage import registry
    from farm.core.checkpoint import build_card, weights_bytes
    weights = weights_bytes(substitute.model)
    card = build_card(substitute.model, substitute.charset, weights, zoo={"name": "position-a", "role": HELD_OUT})
    with pytest.raises(HeldOutError):
        registry.publish(store, weights, card)
    assert registry.current(store) is None


def test_pool_evaluation_agrees_with_the_pool_keys(store, substitute, monkeypatch):
    import json

    from click.testing import CliRunner

    from farm.cli import main
    from farm.ops.submit import generate_pool
    from farm.storage.pools import read_keys

    spec = PoolSpec.from_preset("paper", count=24, shard_size=12, steps=3, mask="full")
    generate_pool(store, "e", spec, [substitute], SEEDS.secret, progress=False)
    monkeypatch.setenv("FARM_STORE", store.url)
    result = CliRunner().invoke(main, ["evaluate", "--pool", "e", "--json", "--chain", "otsu"])  # CHAINS: 2 min
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)["accuracy"]
    records = read_keys(store, "e")
    share = lambda key: round(sum(r[key] == r["answer"] for r in records) / len(records), 4)  # noqa: E731
    assert table["substitute"]["adversarial"]["none"] == share("reading")
    assert table["substitute"]["clean"]["none"] == share("reading_clean")
    assert json.loads(result.output)["roles"]["crnn-b"] == "donor"  # the zoo is read too


def test_farm_generate_defaults_to_the_measured_transfer_setting(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from farm.cli import main
    from farm.core.presets import PRESETS
    from farm.storage.store import LocalStore

    monkeypatch.setenv("FARM_STORE", f"file://{tmp_path / 'store'}")
    # a grey scheme: a generation naming no family is of noise there (on colour, ink: tests/test_families.py)
    result = CliRunner().invoke(main, ["generate", "--pool", "d", "--count", "4", "--steps", "2", "--json",
                                       "--scheme", "classic_grey"])
    assert result.exit_code == 0, result.output
    spec = json.loads(LocalStore(tmp_path / "store").get("pools/d/manifest.json"))["spec"]
    assert {k: spec[k] for k in PRESETS["recommended"]} == {**PRESETS["recommended"], "steps": 2}
    l2 = CliRunner().invoke(main, ["generate", "--pool", "e", "--count", "4", "--steps", "1", "--norm", "l2",
                                   "--eps", "2", "--json", "--scheme", "classic_grey"])
    assert l2.exit_code == 0, l2.output  # no glyph budget is implied for L2


def test_another_method_takes_its_own_defaults_not_the_transfer_switches_of_the_preset(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from farm.cli import main
    from farm.storage.store import LocalStore

    monkeypatch.setenv("FARM_STORE", f"file://{tmp_path / 'store'}")
    store = LocalStore(tmp_path / "store")

    def stored(pool: str, *args: str) -> dict:
        result = CliRunner().invoke(main, ["generate", "--pool", pool, "--count", "2", "--shard-size", "2",
                                           "--method", "iterative", "--steps", "1", "--no-progress", *args])
        assert result.exit_code == 0, result.output
        return json.loads(store.get(f"pools/{pool}/manifest.json"))["spec"]

    plain = stored("plain")
    assert {k: plain[k] for k in ("eps", "diversity", "smoothing", "early_stop", "decay", "eps_glyph")} == \
        {"eps": 8 / 255, "diversity": 0.0, "smoothing": 0.0, "early_stop": True, "decay": None, "eps_glyph": None}
    assert plain == PoolSpec(count=2, shard_size=2, method="iterative", steps=1).to_dict()  # the API agrees
    asked = stored("asked", "--diversity", "0.5", "--eps", "16/255")
    assert (asked["diversity"], asked["smoothing"], asked["eps"]) == (0.5, 0.0, 16 / 255)
    assert asked["eps_glyph"] == 8 / 255  # the preset's glyph budget stays with any method, under a larger eps
