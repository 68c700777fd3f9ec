"""Nobody re-renders a pool's captchas without FARM_SECRET; pools from before keying are read, never grown.

The attack this guards against (a hostile probe found it): the scheme code is public and the pool
seed is not secret, so an attacker renders the clean captchas of seeds 0, 1, 2, ... and takes,
for each served image, the answer of the rendering nearest in L-inf.
"""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from farm.cli import main
from farm.exceptions import PoolError
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.ops.shard import attack_shard, perturb, render_shard, write_shard
from farm.storage.layout import decode_png, image_key, manifest_key
from farm.storage.pools import pool_images, read_keys
from farm.storage.manifest import read_manifest, write_manifest
from farm.ops.refill import refill
from farm.core.schemes import captcha_seed, get_scheme
from farm.core.seeds import KEYED, POOL_STREAM, UNKEYED, Seeds
from farm.storage.served import mark_served
from workers import tasks

SECRET = b"test-secret-not-for-production"
GUESSED_SEEDS = range(4)  # what an attacker tries first: the default seed 0 and its neighbours


def make(store, substitute, pool="p", secret=SECRET, **spec):
    spec = PoolSpec(**{"count": 8, "shard_size": 4, "method": "none", "steps": 1, **spec})
    generate_pool(store, pool, spec, [substitute], secret, progress=False, processes=1)
    return spec


def served_images(store, pool):
    records = read_keys(store, pool)
    return records, np.stack([decode_png(store.get(image_key(pool, r["id"]))) for r in records]).astype(np.int16)


def nearest_public_rendering(image: np.ndarray, count: int) -> tuple[int, str]:
    """(L-inf distance, text) of the rendering nearest `image` among those anyone can make from public seeds."""
    scheme = get_scheme("classic")
    best = (256, "")
    for seed in GUESSED_SEEDS:
        for index in range(count):
            captcha = scheme.sample(captcha_seed(seed, index, POOL_STREAM))
            distance = int(np.abs(captcha.image.astype(np.int16) - image).max())
            best = min(best, (distance, captcha.text))
    return best


@pytest.mark.parametrize("seed", [0, 3])
def test_a_pool_of_a_guessable_seed_cannot_be_rendered_again_without_the_secret(store, substitute, seed):
    make(store, substitute, seed=seed)  # clean captchas: the easiest case for the attacker (eps 0)
    records, images = served_images(store, "p")
    for record, image in zip(records, images):
        distance, text = nearest_public_rendering(image, len(records))
        assert distance > 64 and text != record["answer"], "a served captcha was rendered again from public seeds"


def test_with_the_secret_the_same_seed_gives_the_same_captchas_and_another_secret_other_ones(store, substitute):
    make(store, substitute, pool="a", method="direct")
    make(store, substitute, pool="b")
    make(store, substitute, pool="c", secret=b"another-farm's-secret")
    answers = {pool: [r["answer"] for r in read_keys(store, pool)] for pool in "abc"}
    assert answers["a"] == answers["b"]  # every method perturbs the same clean captchas, index by index
    assert sum(x != y for x, y in zip(answers["a"], answers["c"])) >= 6
    assert read_manifest(store, "a")["derivation"] == KEYED
    clean = pool_images(store, "b")[1]
    assert (clean == served_images(store, "b")[1]).all()  # the farm itself renders them again, under the secret


def test_rendering_a_pool_again_under_another_secret_is_refused_not_silently_wrong(store, substitute, monkeypatch):
    make(store, substitute)
    monkeypatch.setenv("FARM_SECRET", "not-the-farm's-secret")
    with pytest.raises(PoolError, match="FARM_SECRET: not the secret pool 'p' was made with"):
        pool_images(store, "p")


def test_seeds_keep_the_secret_out_of_their_repr_and_refuse_an_empty_one():
    assert "test-secret" not in repr(Seeds(SECRET)) and "test-secret" not in str(Seeds(SECRET))
    with pytest.raises(ValueError, match="FARM_SECRET"):
        Seeds(b"")
    with pytest.raises(ValueError, match="derivation"):
        Seeds(SECRET, "md5")


def test_the_attack_draws_are_keyed_as_the_captchas_are(substitute):
    """Input diversity, a placement's chains and a generator's codes are drawn from a seed only the secret gives: the
    public pool seed no longer tells anyone which codes a public generator was given."""
    spec = PoolSpec(count=4, shard_size=4, method="momentum", steps=2, diversity=0.7, early_stop=False).validate()
    clean = render_shard(spec, 0, Seeds(SECRET))
    other = dataclasses.replace(clean, attack_seed=Seeds(b"another-secret").attack(spec.seed, 0))
    public = dataclasses.replace(clean, attack_seed=None)
    assert clean.attack_seed not in {other.attack_seed, spec.seed * 1_000_003}
    first = perturb(spec, clean, [substitute], 0)
    assert first.tobytes() == perturb(spec, render_shard(spec, 0, Seeds(SECRET)), [substitute], 0).tobytes()
    assert first.tobytes() != perturb(spec, other, [substitute], 0).tobytes()
    assert first.tobytes() != perturb(spec, public, [substitute], 0).tobytes()
    assert render_shard(spec, 0, Seeds(SECRET, UNKEYED)).attack_seed == spec.seed * 1_000_003  # as before keying
    assert Seeds(SECRET, UNKEYED).attack(7, 2) == 7 * 1_000_003 + 2


# --- pools written before keying ---------------------------------------------------------------------------

def make_unkeyed(store, substitute, pool="old"):
    """A pool as written before keying: captchas from the seed alone, a manifest without `derivation`."""
    spec = PoolSpec(count=8, shard_size=4, method="none", steps=1)
    for shard in range(spec.shards):
        clean = render_shard(spec, shard, Seeds(SECRET, UNKEYED))
        write_shard(store, pool, shard, spec, clean, attack_shard(spec, clean, [substitute], shard), substitute, SECRET)
    manifest = write_manifest(store, pool, spec, substitute, status="complete")
    del manifest["derivation"]
    store.put(manifest_key(pool), json.dumps(manifest).encode())
    return spec


def stored(store, pool="old") -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list(f"pools/{pool}/")}


def test_a_pool_from_before_keying_is_still_read_as_it_was_made(store, substitute):
    make_unkeyed(store, substitute)
    records, clean, adversarial = pool_images(store, "old")
    assert (clean == adversarial).all()  # rendered again with its own derivation, so it matches what is stored
    assert records[0]["answer"] == get_scheme("classic").sample(captcha_seed(0, 0, POOL_STREAM)).text


def test_a_pool_from_before_keying_is_never_grown_or_completed_and_says_what_to_do(store, substitute):
    spec = make_unkeyed(store, substitute)
    before = stored(store)
    for grown in (spec, PoolSpec(**{**spec.to_dict(), "count": 16})):
        with pytest.raises(PoolError, match=r"FARM_SECRET.*farm pool delete old"):
            generate_pool(store, "old", grown, [substitute], SECRET, progress=False, processes=1, grow=True)
    mark_served(store, "old", [r["id"] for r in read_keys(store, "old")[:6]])
    (row,) = refill(store, 8, lambda pool, grown: generate_pool(store, pool, grown, [substitute], SECRET,
                                                                progress=False, processes=1, grow=True))
    assert row["added"] == 0 and "FARM_SECRET" in row["error"]
    assert {k: v for k, v in stored(store).items() if "/served/" not in k} == before  # nothing mixed in


def test_pool_list_names_the_pools_anyone_can_render_again(store, substitute, monkeypatch):
    make_unkeyed(store, substitute)
    make(store, substitute, pool="new")
    monkeypatch.setenv("FARM_STORE", store.url)
    listed = CliRunner().invoke(main, ["pool", "list"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert "UNKEYED" in lines["old"] and "UNKEYED" not in lines["new"]
    rows = json.loads(CliRunner().invoke(main, ["pool", "list", "--json"]).output)
    assert {r["pool"]: r["derivation"] for r in rows} == {"old": UNKEYED, "new": KEYED}


def test_a_worker_never_writes_a_shard_queued_for_a_pool_from_before_keying(store, substitute, monkeypatch):
    spec = make_unkeyed(store, substitute)
    store.delete(f"pools/old/keys/{1:05d}.jsonl")  # as if shard 1 were still queued when the farm was upgraded
    before = stored(store)
    monkeypatch.setattr(tasks._held, "store", store)
    with pytest.raises(PoolError, match="FARM_SECRET"):
        tasks.generate_shard("old", 1, 4, spec.to_dict())
    assert stored(store) == before
