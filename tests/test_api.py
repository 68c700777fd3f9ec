"""farm.api, the facade for scripts: one call makes the pool `farm generate` makes, byte for byte."""

from __future__ import annotations

from click.testing import CliRunner

from farm.api import PoolClient, generate
from farm.cli import main
from farm.storage.store import LocalStore


def stored(root) -> dict[str, bytes]:
    """Every image and keys file of a store's pools, by key (manifests hold times, so they are left out)."""
    store = LocalStore(root)
    return {key: store.get(key) for key in store.list("pools/") if "/images/" in key or "/keys/" in key}


def test_one_call_makes_the_pool_farm_generate_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("FARM_SECRET", "facade")
    by_cli = CliRunner().invoke(main, ["generate", "--pool", "p", "--count", "3", "--seed", "4", "--steps", "3",
                                       "--store", str(tmp_path / "cli"), "--no-progress", "--json"])
    assert by_cli.exit_code == 0, by_cli.output
    summary = generate("p", 3, store=str(tmp_path / "api"), seed=4, steps=3)
    assert summary["count"] == 3 and summary["generated"] == 3
    made = stored(tmp_path / "api")
    assert made and made == stored(tmp_path / "cli")
    client = PoolClient(str(tmp_path / "api"))
    shown = client.draw("p")
    assert client.verify("p", shown.id, "no such answer") is False
