"""Anticipation: copies of the substitute and donors adapted on the farm's own pools become the next targets."""

from __future__ import annotations

import json

import pytest

from click.testing import CliRunner

from farm.cli import main
from farm.core.attacks.methods import make_attack
from farm.core.defaults import FinetuneConfig
from farm.core.families import FAMILIES
from farm.core.spec import PoolSpec
from farm.exceptions import CheckpointError, FinetuneRefused
from farm.ops.anticipation import HARDENED
from farm.ops.finetune import finetune
from farm.ops.shard import attack_solvers
from farm.ops.submit import generate_pool
from farm.storage import registry
from farm.storage.manifest import read_manifest
from farm.storage.store import LocalStore
from tests.test_families import SECRET, answers_reading

# as small as a fine-tune gets: no weights move (lr 1e-12) and no donor is named; the copies adapt for 3 steps
SMALL = FinetuneConfig(steps=15, lr=1e-12, donors=0, batch_size=32, eval_every=15, patience=2, replay_count=200,
                       guard_count=50, workers=0, anticipate=40, anticipate_steps=3)


@pytest.mark.slow
def test_once_the_bot_learned_the_family_the_next_version_is_aimed_at_hardened_copies(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("FARM_SECRET", SECRET.decode())
    substitute = registry.load(store, registry.ensure_current(store)["version"])
    spec = PoolSpec(count=40, shard_size=40, method="iterative", mask="full", eps=8 / 255, steps=2,
                    scheme="classic_grey")
    generate_pool(store, "p", spec, [substitute], SECRET, progress=False, processes=1)
    # the bot reads 20% of noise: nothing learned, nothing to anticipate, nothing published
    with pytest.raises(FinetuneRefused, match="no gain") as refused:
        finetune(store, [answers_reading(store, "p", 0.2)], config=SMALL, progress=False)
    assert refused.value.result["hardened"] is None and registry.versions(store) == ["v1"]
    # it reads 60%: the farm makes its own noise captchas and adapts a copy of each model on them
    result = finetune(store, [answers_reading(store, "p", 0.6)], config=SMALL, progress=False)
    assert result["hardened"]["on"] == {"noise": "farm-own-v1-noise"} and result["hardened"]["count"] == 40
    assert read_manifest(store, "farm-own-v1-noise")["count"] == 40
    copies = result["hardened"]["copies"]
    assert [c["of"] for c in copies] == list(HARDENED) and [c["version"] for c in copies] == ["v2", "v3", "v4"]
    for c in copies:  # stored, never CURRENT: a copy reads clean captchas worse than the substitute
        card = registry.card(store, c["version"])
        assert card["sha256"] == c["sha256"] and card["refused"].startswith(f"a copy of {c['of']} hardened")
        assert card["copy_of"] == c["of"]  # `farm checkpoint list` shows it as a copy
        assert not {"hardened", "ensemble"} & set(card) and card["family"] is None  # the base's, not the copy's
        assert card["metrics"]["accuracy_count"] == SMALL.guard_count  # the copy's own clean accuracy
        with pytest.raises(CheckpointError, match="refused"):
            registry.promote(store, c["version"])
    assert result["version"] == "v5" and registry.current(store)["version"] == "v5"
    assert registry.card(store, "v5")["hardened"] == result["hardened"]
    # every worker loading v5 aims at the copies, after the substitute and its donors
    loaded = registry.load(store, "v5")
    assert [s.sha256 for s in loaded.companions] == [c["sha256"] for c in copies]
    solvers = attack_solvers(PoolSpec(count=2, scheme="classic_grey"), loaded)
    assert solvers[0] is loaded and [s.sha256 for s in solvers[-3:]] == [c["sha256"] for c in copies]
    # ink: the donors place the dots, and the dense noise is aimed at the substitute and its copies
    ink = PoolSpec.from_preset("edge", count=2, scheme="classic_grey")
    assert make_attack("edge", solvers, **ink.attack_settings()).noise.solvers == [loaded, *loaded.companions]
    # `farm generate` says whom it aimed at: the donors by name, the copies by version
    monkeypatch.setenv("FARM_STORE", store.url)
    shown = CliRunner().invoke(main, ["generate", "--pool", "q", "--count", "2", "--scheme", "classic_grey",
                                      "--steps", "1", "--version", "v5"])
    assert "substitute v5 (with hardened copies v2, v3, v4) reads" in shown.output, shown.output


@pytest.mark.slow
def test_copies_publish_a_version_even_when_the_family_stays_and_no_weights_moved(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("FARM_SECRET", SECRET.decode())
    substitute = registry.load(store, registry.ensure_current(store)["version"])
    weights, card = registry.bundled()  # a lineage whose bot learned every other family already: noise is read least
    learned = {"geometry": 0.9, "ink": 0.9, "warped_ink": 0.9}
    registry.publish(store, weights, {**card, "family": {"name": "noise", "read": learned}})
    generate_pool(store, "p", PoolSpec(count=40, shard_size=40, method="iterative", mask="full", eps=8 / 255, steps=2,
                                       scheme="classic_grey"), [substitute], SECRET, progress=False, processes=1)
    result = finetune(store, [answers_reading(store, "p", 0.6)], config=SMALL, progress=False)
    assert result["family"]["name"] == result["family"]["from"] == "noise" and result["weights"] == "unchanged"
    assert list(result["hardened"]["on"]) == list(FAMILIES)  # every family the lineage shows learned
    assert result["version"] == "v6" and result["promoted"] and registry.card(store, "v6")["hardened"]


@pytest.mark.slow
def test_a_hardened_copy_that_does_not_match_its_card_is_refused_by_name(tmp_path):
    store = LocalStore(tmp_path / "store")
    registry.ensure_current(store)
    weights, card = registry.bundled()
    copy = registry.publish(store, weights, {**card, "refused": "a copy"}, parent="v1", make_current=False,
                            held_back="a hardened copy")
    named = {"on": {}, "copies": [{"of": "substitute", "version": copy, "sha256": "0" * 64}], "count": 0}
    version = registry.publish(store, weights, {**card, "hardened": named})
    with pytest.raises(CheckpointError, match=f"version {version}: its hardened copy {copy} has sha256 "):
        registry.load(store, version)
    store.put(f"checkpoints/{version}/card.json", json.dumps(
        {**registry.card(store, version), "hardened": {"copies": ["v2"]}}).encode())
    with pytest.raises(CheckpointError, match="hardened copies are malformed"):
        registry.load(store, version)


def test_checkpoint_list_shows_a_hardened_copy_as_a_copy_of_its_model(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    registry.ensure_current(store)
    weights, card = registry.bundled()
    registry.publish(store, weights, {**card, "refused": "a copy", "copy_of": "crnn-b"}, parent="v1",
                     make_current=False, held_back="a hardened copy")
    registry.publish(store, weights, {**card, "refused": "guard: fell"}, parent="v1", make_current=False)
    monkeypatch.setenv("FARM_STORE", store.url)
    listed = json.loads(CliRunner().invoke(main, ["checkpoint", "list", "--json"]).output)
    assert [(r["status"], r["copy_of"]) for r in listed] == [(None, None), ("copy", "crnn-b"), ("refused", None)]
    shown = CliRunner().invoke(main, ["checkpoint", "list"]).output.splitlines()
    assert " copy of crnn-b " in shown[1] and "  -  " in shown[1] and " refused " in shown[2]


def test_own_pools_of_a_family_learned_earlier_are_made_with_the_generation_the_bot_learned_it_from(tmp_path):
    from farm.ops.anticipation import made_with

    store = LocalStore(tmp_path / "store")
    registry.ensure_current(store)  # v1: noise on grey, ink on colour
    weights, card = registry.bundled()
    registry.publish(store, weights, {**card, "family": {"name": "geometry"}})  # v2, the move to geometry
    registry.publish(store, weights, {**card, "refused": "a copy", "copy_of": "substitute", "family": None},
                     parent="v2", make_current=False)  # v3: a copy, no generation of its own
    registry.publish(store, weights, {**card, "family": {"name": "geometry"}})  # v4: geometry stays
    assert made_with(store, "v4", "geometry", "RGB") == "v4"
    assert made_with(store, "v4", "ink", "RGB") == "v1" and made_with(store, "v4", "noise", "L") == "v1"
    assert made_with(store, "v4", "noise", "RGB") == "v4"  # no generation of it: shown learned by evidence alone
