"""`farm pool delete`: a pool leaves the store whole, complete or stuck, after confirmation; its name is free again."""

import json

import pytest
from click.testing import CliRunner

from farm.storage import registry
from farm.cli import main
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.pools import read_keys
from farm.storage.manifest import write_manifest
from farm.storage.served import mark_served

SECRET = b"test-secret-not-for-production"
TINY = PoolSpec(count=4, shard_size=2, steps=1)


def make(store, substitute, pool: str, spec: PoolSpec = TINY) -> None:
    generate_pool(store, pool, spec, [substitute], SECRET, progress=False, processes=1)


@pytest.fixture
def farm_store(any_store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", any_store.url)
    return any_store


def test_a_pool_is_deleted_whole_and_nothing_else(farm_store, substitute):
    store = farm_store
    registry.ensure_current(store)
    make(store, substitute, "p")
    make(store, substitute, "q")
    mark_served(store, "p", [r["id"] for r in read_keys(store, "p")[:2]])
    others = [k for k in store.list("") if not k.startswith("pools/p/")]
    result = CliRunner().invoke(main, ["pool", "delete", "p", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    # manifest, 4 images, 2 keys files and the served batch
    assert json.loads(result.output) == {"pool": "p", "deleted": 8, "store": store.url}
    assert store.list("pools/p/") == [] and store.list_dirs("pools") == ["q"]
    assert store.list("") == others
    listed = CliRunner().invoke(main, ["pool", "list", "--json"])
    assert [r["pool"] for r in json.loads(listed.output)] == ["q"]
    make(store, substitute, "p", PoolSpec(count=2, shard_size=2, steps=1, seed=5))  # the name takes another spec


def test_a_stuck_pool_is_deleted_once_the_operator_confirms(farm_store, substitute):
    store = farm_store
    write_manifest(store, "stuck", TINY, substitute, status="generating")  # what a generate that died leaves
    runner = CliRunner()
    listed = runner.invoke(main, ["pool", "list", "--json"])
    assert [(r["pool"], r["complete"], r["status"]) for r in json.loads(listed.output)] == [("stuck", 0, "generating")]
    declined = runner.invoke(main, ["pool", "delete", "stuck"], input="n\n")
    assert declined.exit_code == 1 and "A platform serving it loses it" in declined.stderr, declined.output
    assert "Aborted" in declined.stderr and store.list("pools/stuck/") == ["pools/stuck/manifest.json"]
    confirmed = runner.invoke(main, ["pool", "delete", "stuck"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "deleted pool stuck: 1 objects" in confirmed.stdout and store.list("pools/") == []
    make(store, substitute, "stuck", PoolSpec(count=2, shard_size=2, steps=1, seed=5))


@pytest.mark.parametrize("name,message", [
    ("nope", "pool: 'nope' does not exist in"),
    ("../checkpoints", "pool: '../checkpoints' must be letters"),
    ("", "pool: '' must be letters"),
])
def test_deleting_a_pool_that_is_not_there_is_a_clear_error(name, message, farm_store):
    registry.ensure_current(farm_store)
    before = farm_store.list("")
    result = CliRunner().invoke(main, ["pool", "delete", name, "--yes"])
    assert result.exit_code == 1 and f"Error: {message}" in result.stderr, result.output
    assert farm_store.list("") == before


def test_delete_help_warns_that_platforms_lose_the_pool():
    result = CliRunner().invoke(main, ["pool", "delete", "--help"])
    assert result.exit_code == 0 and "A platform serving this pool loses it" in " ".join(result.output.split())
