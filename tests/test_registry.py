"""The checkpoint registry: immutable versions, an atomic CURRENT, verified loads, a worker that keeps serving."""

import json
import pickle
import re
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from farm.storage import registry
from farm.core.charset import DEFAULT_CHARSET, Charset
from farm.core.checkpoint import build_card, sha256_hex, weights_bytes
from farm.cli import main
from farm.exceptions import CheckpointError, ConflictError
from farm.core.model import CRNN, CRNNConfig
from farm.core.schemes import get_scheme
from farm.core.spec import PoolSpec
from farm.ops.submit import generate_pool
from farm.storage.manifest import read_manifest
from farm.storage.pools import list_pools, pool_stats
from farm.storage.store import LocalStore, open_store
from tests.fault_proxy import FaultProxy

SECRET = b"test-secret-not-for-production"
SMALL = CRNNConfig(channels=(4, 8, 8, 8), hidden=8)  # registry tests need valid weights, not good ones


def checkpoint(seed: int = 0, charset: Charset = DEFAULT_CHARSET) -> tuple[bytes, dict]:
    torch.manual_seed(seed)
    model = CRNN(CRNNConfig(**{**SMALL.to_dict(), "num_classes": charset.num_classes}))
    weights = weights_bytes(model)
    card = build_card(model, charset, weights, version=f"run-{seed}", metrics={"accuracy": {"classic": 0.5}})
    return weights, json.loads(json.dumps(card))  # as read from card.json


def test_publish_writes_an_immutable_version_then_switches_current(any_store):
    w1, c1 = checkpoint(1)
    assert registry.publish(any_store, w1, c1) == "v1"
    assert registry.current(any_store) == {"version": "v1", "sha256": sha256_hex(w1)}
    w2, c2 = checkpoint(2)
    assert registry.publish(any_store, w2, c2) == "v2"
    assert any_store.list("checkpoints/") == ["checkpoints/CURRENT", "checkpoints/v1/card.json",
                                              "checkpoints/v1/model.safetensors", "checkpoints/v2/card.json",
                                              "checkpoints/v2/model.safetensors"]
    card = registry.card(any_store, "v2")
    assert (card["version"], card["parent"], card["sha256"]) == ("v2", "v1", sha256_hex(w2))
    assert card["charset"] == c2["charset"] and card["config"] == c2["config"] and "published" in card
    assert any_store.get("checkpoints/v1/model.safetensors") == w1  # the older version is untouched
    assert registry.versions(any_store) == ["v1", "v2"]


def test_load_verifies_and_caches_by_version_and_sha256(any_store):
    w1, c1 = checkpoint(1)
    registry.publish(any_store, w1, c1)
    solver = registry.load(any_store)
    assert solver.sha256 == sha256_hex(w1) and solver.version == "v1"
    assert registry.load(any_store) is solver and registry.load(any_store, "v1") is solver
    # the same weights published again with another card (a fine-tune that kept them, naming a donor)
    registry.publish(any_store, w1, {**c1, "ensemble": ["crnn-b"]})
    again = registry.load(any_store)
    assert again.version == "v2" and again.card["ensemble"] == ["crnn-b"] and again.sha256 == solver.sha256
    assert registry.load(any_store, "v1").card.get("ensemble") is None
    held, error = registry.refresh(any_store, solver)  # a worker holding v1 moves to v2 at its next shard
    assert held.version == "v2" and error is None and registry.refresh(any_store, held)[0] is held


def test_a_corrupt_weights_object_is_refused_and_the_held_version_keeps_serving(s3_store):
    w1, c1 = checkpoint(1)
    registry.publish(s3_store, w1, c1)
    held, error = registry.refresh(s3_store, None)
    assert held.version == "v1" and error is None
    w2, c2 = checkpoint(2)
    registry.publish(s3_store, w2, c2)
    broken = bytearray(w2)
    broken[-5] ^= 0xFF  # bit rot, or someone overwrote the object
    s3_store.put("checkpoints/v2/model.safetensors", bytes(broken))

    solver, error = registry.refresh(s3_store, held)
    assert solver is held and isinstance(error, CheckpointError) and "sha256" in str(error)
    with pytest.raises(CheckpointError, match="version v2 refused: weights: sha256 .* corrupt"):
        registry.load(s3_store)
    with pytest.raises(CheckpointError, match="v2 refused"):
        registry.promote(s3_store, "v2")
    assert registry.rollback(s3_store) == "v1"  # the parent of CURRENT
    solver, error = registry.refresh(s3_store, held)
    assert solver is held and error is None and registry.current(s3_store)["version"] == "v1"


def test_a_pickle_posing_as_weights_is_refused_without_being_unpickled(store, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return Path.touch, (marker,)

    w1, c1 = checkpoint(1)
    registry.publish(store, w1, c1)
    evil = pickle.dumps(Payload())
    card = {**c1, "sha256": sha256_hex(evil), "version": "v2", "parent": "v1"}
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        registry.publish(store, evil, card)
    # written behind the registry's back: loading refuses it just the same
    store.put("checkpoints/v2/model.safetensors", evil)
    store.put("checkpoints/v2/card.json", json.dumps(card).encode())
    store.put("checkpoints/CURRENT", json.dumps({"version": "v2", "sha256": sha256_hex(evil)}).encode())
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        registry.load(store)
    assert not marker.exists()


def test_foreign_checkpoints_are_refused(store):
    w1, c1 = checkpoint(1)
    registry.publish(store, w1, c1)
    with pytest.raises(CheckpointError, match="not a captchafarm card"):
        registry.publish(store, w1, {k: v for k, v in c1.items() if k != "format"})
    other = Charset("abc", 1, 3)
    w3, c3 = checkpoint(3, other)
    with pytest.raises(CheckpointError, match="charset: the checkpoint reads 'abc'.*--allow-charset-change"):
        registry.publish(store, w3, c3)
    with pytest.raises(CheckpointError, match="does not match the weights"):
        registry.publish(store, w1, {**c1, "sha256": "0" * 64})
    w2, _ = checkpoint(2)
    with pytest.raises(CheckpointError, match="sha256"):
        registry.publish(store, w2, c1)  # another model's card
    assert registry.versions(store) == ["v1"] and registry.current(store)["version"] == "v1"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_concurrent_publishes_exactly_one_wins(kind, tmp_path, request):
    url = (tmp_path / "store").as_uri() if kind == "local" else request.getfixturevalue("s3_store").url
    w1, c1 = checkpoint(1)
    registry.publish(open_store(url), w1, c1)
    candidates = [checkpoint(10), checkpoint(11)]
    barrier, won, lost = threading.Barrier(2), [], []

    def publisher(weights, card):
        store = open_store(url)  # each publisher is its own client, as two machines would be
        barrier.wait()
        try:
            won.append((registry.publish(store, weights, card, parent="v1"), sha256_hex(weights)))
        except ConflictError as e:
            lost.append(str(e))

    threads = [threading.Thread(target=publisher, args=c) for c in candidates]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and len(lost) == 1, (won, lost)
    assert "retry" in lost[0]
    store = open_store(url)
    assert registry.current(store) == {"version": won[0][0], "sha256": won[0][1]}
    for version in registry.versions(store):  # whatever the loser left behind is intact, never mixed
        weights = store.get(f"checkpoints/{version}/model.safetensors")
        assert sha256_hex(weights) == registry.card(store, version)["sha256"]
    # the loser retries on top of the winner and succeeds
    assert registry.publish(store, *candidates[1], parent=won[0][0]) in ("v3", "v4")


def test_racing_publishers_never_mix_objects(store):
    w1, c1 = checkpoint(1)
    registry.publish(store, w1, c1)
    barrier, outcomes = threading.Barrier(4), []

    def publisher(seed):
        weights, card = checkpoint(seed)
        barrier.wait()
        try:
            outcomes.append(("won", registry.publish(LocalStore(store.root), weights, card)))
        except ConflictError:
            outcomes.append(("lost", None))

    threads = [threading.Thread(target=publisher, args=(20 + i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(outcomes) == 4 and any(kind == "won" for kind, _ in outcomes)
    for version in registry.versions(store):
        card = registry.card(store, version)
        assert sha256_hex(store.get(f"checkpoints/{version}/model.safetensors")) == card["sha256"]
    assert registry.current(store)["version"] in {v for kind, v in outcomes if kind == "won"}


def test_publishing_completes_through_transient_s3_failures(bucket, monkeypatch, s3_env):
    with FaultProxy(s3_env, fail_every=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        store = open_store(f"s3://{bucket}/farm")
        w1, c1 = checkpoint(1)
        w2, c2 = checkpoint(2)
        assert registry.publish(store, w1, c1) == "v1" and registry.publish(store, w2, c2) == "v2"
        assert registry.load(store).sha256 == sha256_hex(w2)
    assert proxy.failed >= 3


def test_the_bundled_substitute_is_the_first_version_of_an_empty_store(s3_store, substitute):
    assert registry.current(s3_store) is None
    pointer = registry.ensure_current(s3_store)
    weights, _ = registry.bundled()
    assert pointer == {"version": "v1", "sha256": sha256_hex(weights)}
    assert registry.ensure_current(s3_store) == pointer and registry.versions(s3_store) == ["v1"]
    assert registry.load(s3_store).sha256 == substitute.sha256
    assert registry.card(s3_store, "v1")["generation"] == 1 and registry.card(s3_store, "v1")["parent"] is None


def test_checkpoint_commands(tmp_path, s3_store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", s3_store.url)
    runner = CliRunner()
    for seed in (1, 2):
        folder = tmp_path / f"ckpt{seed}"
        folder.mkdir()
        weights, card = checkpoint(seed)
        (folder / "model.safetensors").write_bytes(weights)
        (folder / "card.json").write_text(json.dumps(card))
        result = runner.invoke(main, ["checkpoint", "publish", str(folder)])
        assert result.exit_code == 0, result.output
        assert f"published v{seed} (now CURRENT)" in result.output
    rows = json.loads(runner.invoke(main, ["checkpoint", "list", "--json"]).output)
    assert [(r["version"], r["current"], r["parent"]) for r in rows] == [("v1", False, None), ("v2", True, "v1")]
    assert json.loads(runner.invoke(main, ["checkpoint", "show"]).output)["version"] == "v2"
    result = runner.invoke(main, ["checkpoint", "rollback"])
    assert result.exit_code == 0 and "CURRENT is v1" in result.output
    result = runner.invoke(main, ["checkpoint", "promote", "v2"])
    assert result.exit_code == 0 and "CURRENT is v2" in result.output
    result = runner.invoke(main, ["checkpoint", "promote", "v9"])
    assert result.exit_code == 1 and "'v9' is not in the registry; see `farm checkpoint list`" in result.output
    result = runner.invoke(main, ["checkpoint", "publish", str(tmp_path / "ckpt1"), "--parent", "v1"])
    assert result.exit_code == 1 and "not the parent v1" in result.output and "retry" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(main, ["checkpoint", "publish", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "model.safetensors is missing" in result.output


def corrupt_current(store, kind: str, w2: bytes) -> bytes:
    """Write CURRENT behind the registry's back as a crash, a bad copy or a hand edit leaves it; returns the bytes."""
    sound = json.dumps({"version": "v2", "sha256": sha256_hex(w2)}).encode()
    data = {"truncated": sound[:-9],
            "missing-version": json.dumps({"version": "v9", "sha256": sha256_hex(w2)}).encode(),
            "wrong-sha256": json.dumps({"version": "v2", "sha256": "0" * 64}).encode()}[kind]
    store.put(registry.CURRENT, data)
    return data


@pytest.mark.parametrize("kind", ["truncated", "missing-version", "wrong-sha256"])
def test_a_corrupt_current_is_named_and_promote_repairs_it(kind, any_store, monkeypatch, tmp_path):
    monkeypatch.setenv("FARM_STORE", any_store.url)
    captcha = tmp_path / "captcha.png"
    Image.fromarray(get_scheme("classic").sample(1).image).save(captcha)  # solve checks its image before the model
    (w1, c1), (w2, c2), (w3, c3) = checkpoint(1), checkpoint(2), checkpoint(3)
    registry.publish(any_store, w1, c1)
    registry.publish(any_store, w2, c2)
    registry.publish(any_store, w3, c3, make_current=False)
    any_store.put("checkpoints/v3/model.safetensors", w3[:-1] + bytes([w3[-1] ^ 0xFF]))  # bit rot
    broken = corrupt_current(any_store, kind, w2)
    runner = CliRunner()
    for args in (["checkpoint", "show"], ["checkpoint", "rollback"], ["solve", str(captcha)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, result.output)
        assert "checkpoints/CURRENT is corrupt" in result.stderr, (args, result.output)
        assert "`farm checkpoint promote VERSION`" in result.stderr and "`farm checkpoint list`" in result.stderr
    with pytest.raises(CheckpointError, match="CURRENT is corrupt"):
        registry.load(any_store)
    with pytest.raises(CheckpointError, match="CURRENT is corrupt"):
        registry.publish(any_store, w1, c1)
    listed = runner.invoke(main, ["checkpoint", "list", "--json"])
    assert listed.exit_code == 0 and "CURRENT is corrupt" in listed.stderr, listed.output
    assert [(r["version"], r["current"]) for r in json.loads(listed.stdout)] == [("v1", False), ("v2", False),
                                                                                ("v3", False)]
    refused = runner.invoke(main, ["checkpoint", "promote", "v3"])  # the weights are checked against the card first
    assert refused.exit_code == 1 and "v3 refused" in refused.stderr, refused.output
    assert any_store.get(registry.CURRENT) == broken
    result = runner.invoke(main, ["checkpoint", "promote", "v1"])
    assert result.exit_code == 0 and "CURRENT is v1" in result.output, result.output
    assert registry.current(any_store) == {"version": "v1", "sha256": sha256_hex(w1)}
    assert registry.load(any_store).version == "v1" and registry.versions(any_store) == ["v1", "v2", "v3"]


def test_two_repairs_of_a_corrupt_current_do_not_both_win(any_store, monkeypatch):
    (w1, c1), (w2, c2) = checkpoint(1), checkpoint(2)
    registry.publish(any_store, w1, c1)
    registry.publish(any_store, w2, c2)
    corrupt_current(any_store, "truncated", w2)
    other = open_store(any_store.url)  # the other operator: a client of its own
    read = any_store.get_with_etag

    def read_then_the_other_repairs(key):
        seen = read(key)
        if key == registry.CURRENT:
            registry.promote(other, "v2")  # lands between this promoter's read and its conditional write
        return seen

    monkeypatch.setattr(any_store, "get_with_etag", read_then_the_other_repairs)
    with pytest.raises(ConflictError, match="CURRENT moved to v2 while switching to v1"):
        registry.promote(any_store, "v1")
    assert registry.current(other) == {"version": "v2", "sha256": sha256_hex(w2)}


def test_a_refused_version_is_kept_for_inspection_and_promoted_only_with_force(any_store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", any_store.url)
    (w1, c1), (w2, c2) = checkpoint(1), checkpoint(2)
    registry.publish(any_store, w1, c1)
    refused = {**c2, "refused": "guard: clean accuracy on classic fell from 95.0% to 60.0%"}
    with pytest.raises(CheckpointError, match="guard refused this model.*--no-current.*promote --force"):
        registry.publish(any_store, w2, refused)  # never CURRENT by accident
    assert registry.versions(any_store) == ["v1"]
    assert registry.publish(any_store, w2, refused, parent="v1", make_current=False,
                            held_back="refused by the fine-tune guard") == "v2"
    rows = json.loads(CliRunner().invoke(main, ["checkpoint", "list", "--json"]).output)
    assert [(r["version"], r["current"], r["status"], r["refused"]) for r in rows] == [
        ("v1", True, None, None), ("v2", False, "refused", refused["refused"])]
    assert re.search(r"\n  v2     gen 2   refused    [0-9a-f]{12} .* <- v1\n",
                     CliRunner().invoke(main, ["checkpoint", "list"]).output)
    result = CliRunner().invoke(main, ["checkpoint", "promote", "v2"])
    assert result.exit_code == 1 and "the fine-tune guard refused it (guard: clean accuracy" in result.stderr
    assert "promote it anyway with --force" in result.stderr and registry.current(any_store)["version"] == "v1"
    with pytest.raises(CheckpointError, match="refused"):
        registry.rollback(any_store, "v2")
    result = CliRunner().invoke(main, ["checkpoint", "promote", "v2", "--force"])
    assert result.exit_code == 0 and "CURRENT is v2" in result.output
    assert registry.current(any_store) == {"version": "v2", "sha256": sha256_hex(w2)}


def test_an_unpromoted_version_names_what_it_was_made_from_and_why_it_waits(store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", store.url)
    (w1, c1), (w2, c2), (w3, c3) = checkpoint(1), checkpoint(2), checkpoint(3)
    registry.publish(store, w1, c1)
    registry.publish(store, w2, c2)
    # made from v1 while v2 became CURRENT: stored as such, nothing switched, no race to lose
    assert registry.publish(store, w3, c3, parent="v1", make_current=False, held_back="CURRENT moved") == "v3"
    card = registry.card(store, "v3")
    assert (card["parent"], card["held_back"]) == ("v1", "CURRENT moved") and registry.current(store)["version"] == "v2"
    with pytest.raises(CheckpointError, match="'v9' is not in the registry"):
        registry.publish(store, w3, c3, parent="v9", make_current=False)
    with pytest.raises(ValueError, match="held_back: only a version published without make_current"):
        registry.publish(store, w3, c3, held_back="why")
    assert registry.publish(store, w3, {**c3, "held_back": "forged"}) == "v4"  # a copied card's is not taken
    assert "held_back" not in registry.card(store, "v4") and registry.card(store, "v4")["parent"] == "v2"

    def statuses():
        return [(r["version"], r["status"]) for r in json.loads(CliRunner().invoke(main, ["checkpoint", "list",
                                                                                         "--json"]).output)]

    assert statuses() == [("v1", None), ("v2", None), ("v3", "unpromoted"), ("v4", None)]
    registry.promote(store, "v3")
    assert statuses() == [("v1", None), ("v2", None), ("v3", None), ("v4", None)]
    registry.publish(store, *checkpoint(5))  # on top of v3: still promoted once CURRENT moved on
    assert statuses()[2] == ("v3", None)


def test_an_unpromoted_publish_that_loses_its_number_takes_the_next(any_store, monkeypatch):
    (w1, c1), (w2, c2), (w3, c3) = checkpoint(1), checkpoint(2), checkpoint(3)
    registry.publish(any_store, w1, c1)
    other, read, raced = open_store(any_store.url), any_store.list_dirs, []

    def read_then_the_other_claims(prefix):
        seen = read(prefix)
        if not raced:  # another publisher claims the number this one is about to take
            raced.append(registry.publish(other, w3, c3, make_current=False))
        return seen

    monkeypatch.setattr(any_store, "list_dirs", read_then_the_other_claims)
    assert registry.publish(any_store, w2, c2, make_current=False) == "v3" and raced == ["v2"]
    assert registry.card(any_store, "v3")["sha256"] == sha256_hex(w2) and registry.current(any_store)["version"] == "v1"


def test_each_version_is_one_generation_after_its_parent(any_store):
    (w1, c1), (w2, c2), (w3, c3), (w4, c4) = checkpoint(1), checkpoint(2), checkpoint(3), checkpoint(4)
    registry.publish(any_store, w1, {**c1, "generation": 7})  # a copied card's generation is not taken
    registry.publish(any_store, w2, c2)
    registry.publish(any_store, w3, c3)
    registry.publish(any_store, w4, c4, parent="v2", make_current=False)  # a sibling of v3: made from v2 too
    assert [registry.card(any_store, v)["generation"] for v in ("v1", "v2", "v3", "v4")] == [1, 2, 3, 3]
    assert [registry.generation(any_store, v) for v in ("v1", "v2", "v3", "v4")] == [1, 2, 3, 3]
    assert registry.generation(any_store, "v9") is None
    registry.rollback(any_store, "v1")
    registry.publish(any_store, w4, c4)  # on top of v1 again: a second generation 2
    assert registry.card(any_store, "v5")["generation"] == 2


def test_cards_written_before_generations_read_theirs_from_the_lineage(store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", store.url)
    (w1, c1), (w2, c2), (w3, c3) = checkpoint(1), checkpoint(2), checkpoint(3)
    registry.publish(store, w1, c1)
    registry.publish(store, w2, c2)
    for version in ("v1", "v2"):  # as the registry wrote them before it recorded generations
        old = registry.card(store, version)
        del old["generation"]
        store.put(f"checkpoints/{version}/card.json", json.dumps(old).encode())
    assert [registry.generation(store, v) for v in ("v1", "v2")] == [1, 2]
    registry.publish(store, w3, c3)
    assert registry.card(store, "v3")["generation"] == 3
    rows = json.loads(CliRunner().invoke(main, ["checkpoint", "list", "--json"]).output)
    assert [(r["version"], r["generation"], r["lineage"]) for r in rows] == [
        ("v1", 1, []), ("v2", 2, ["v1"]), ("v3", 3, ["v2", "v1"])]
    listed = CliRunner().invoke(main, ["checkpoint", "list"]).output.splitlines()
    assert re.match(r"\* v3 +gen 3 .* <- v2 <- v1$", listed[2]) and re.match(r"  v1 +gen 1 ", listed[0])
    assert "<-" not in listed[0]
    store.delete("checkpoints/v1/card.json")  # an ancestor gone: v2's place in the lineage is unknown
    store.put("checkpoints/v2/card.json", json.dumps({**registry.card(store, "v2"), "generation": None}).encode())
    assert registry.generation(store, "v2") is None and registry.generation(store, "v3") == 3


def test_a_pool_records_the_generation_of_the_substitute_it_was_made_with(store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", store.url)
    registry.ensure_current(store)
    registry.publish(store, *registry.bundled())  # v2: generation 2, the same weights
    spec = PoolSpec(count=2, shard_size=2, steps=1)
    generate_pool(store, "p", spec, [registry.load(store, "v2")], SECRET, progress=False, processes=1)
    assert read_manifest(store, "p")["substitute"] == {"version": "v2", "sha256": registry.current(store)["sha256"],
                                                       "generation": 2}
    assert [(r["pool"], r["substitute"], r["generation"]) for r in list_pools(store)] == [("p", "v2", 2)]
    assert pool_stats(store, "p")["generation"] == 2
    assert "substitute v2 (gen 2)" in CliRunner().invoke(main, ["pool", "list"]).output
    assert "substitute v2 (gen 2) reads" in CliRunner().invoke(main, ["pool", "stats", "p"]).output
    old = read_manifest(store, "p")  # a pool made before pools recorded their generation
    del old["substitute"]["generation"]
    store.put("pools/p/manifest.json", json.dumps(old).encode())
    assert list_pools(store)[0]["generation"] is None and pool_stats(store, "p")["generation"] is None
    assert "substitute v2 (gen ?)" in CliRunner().invoke(main, ["pool", "list"]).output
