"""Hostile input to the `farm` command: a clear error naming the flag and its bound, exit 1, the store unchanged."""

import subprocess

import pytest
from click.testing import CliRunner

from farm.cli import main
from farm.generate import generate_pool
from farm.pool import PoolSpec
from farm.store import LocalStore
from tests.conftest import farm_env

SECRET = b"test-secret-not-for-production"


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory, substitute):
    """A local store holding a 4-captcha pool 'p' (clean: quick to make)."""
    store = LocalStore(tmp_path_factory.mktemp("bad-input") / "store")
    generate_pool(store, "p", PoolSpec(count=4, shard_size=4, method="none"), [substitute], SECRET,
                  progress=False, processes=1)
    return store


def contents(store: LocalStore) -> dict:
    """Every file of a local store and its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(store.root)): p.read_bytes() for p in sorted(store.root.rglob("*")) if p.is_file()}


def farm(store, *args, input=None):
    return CliRunner().invoke(main, list(args), input=input, env={"FARM_STORE": store.url})


def refused(result, *messages: str) -> bool:
    """Exit 1 through click's error (no traceback), the messages on the output."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert all(message in result.output for message in messages), result.output
    return True


@pytest.mark.parametrize("args,message", [
    (["--alpha", "-1"], "alpha: the step size must be in (0, eps] = (0, 0.1255]"),
    (["--diversity", "5"], "diversity: a probability, must be in [0, 1] (got 5.0)"),
    (["--smoothing", "-3"], "smoothing: the Gaussian sigma must be in [0, 10] pixels"),
    (["--decay", "-1"], "decay: the momentum decay must be in [0, 2] (got -1.0)"),
    (["--norm", "l2", "--eps", "10000"], "eps: must be in (0, 8] for l2 (got 10000.0)"),
    (["--count", "100000000000"], "count: must be 1 to 100_000_000 a pool"),
    (["--shard-size", "100000"], "shard-size: must be 1 to 8192"),
    (["--count", "100000000", "--shard-size", "10"], "use --shard-size 100 or more"),
])
def test_generate_refuses_settings_out_of_range_and_writes_nothing(pool_store, args, message):
    before = contents(pool_store)
    assert refused(farm(pool_store, "generate", "--pool", "q", "--count", "4", "--no-progress", *args), message)
    assert contents(pool_store) == before


def test_a_huge_count_is_refused_by_the_real_command_before_the_store_is_touched(tmp_path):
    result = subprocess.run(["farm", "generate", "--pool", "huge", "--count", "100000000000"], capture_output=True,
                            text=True, env=farm_env(tmp_path), timeout=300, check=False)
    assert result.returncode == 1 and "count: must be 1 to 100_000_000 a pool" in result.stderr, result.stderr
    assert not (tmp_path / "store").exists(), "a refused generate wrote something"
