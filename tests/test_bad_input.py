"""Hostile input to the `farm` command: a clear error naming the flag and its bound, exit 1, the store unchanged."""

import json
import struct
import subprocess
import zlib

import pytest
from click.testing import CliRunner
from PIL import Image

from farm.cli import main
from farm.storage.pools import read_keys
from farm.storage.store import LocalStore
from tests.conftest import farm_env
from tests.test_answers import pool_store  # noqa: F401 (fixture: a store with a small clean pool 'p')


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
    (["--alpha", "-1"], "alpha: the step size must be in (0, eps] = (0, 0.09412]"),  # the colour default: 24/255
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


@pytest.mark.parametrize("args,message", [
    (["--method", "iterative", "--decay", "0.5"],
     "decay: only momentum, robust, edge, warped_edge and generator take it, not iterative"),
    (["--method", "direct", "--steps", "3"],
     "steps: only iterative, momentum, robust, warp, edge, warped_edge and generator take it, not direct"),
    (["--method", "robust", "--no-early-stop"],
     "early-stop: only iterative, momentum, edge and warped_edge take it, not robust"),
    (["--samples", "2"], "samples: only robust takes it, not edge"),
    (["--method", "none", "--eps", "8/255"],
     "eps: only direct, iterative, momentum, robust, edge, warped_edge and generator take it, not none"),
])
def test_generate_refuses_a_setting_the_method_does_not_take_by_name_and_writes_nothing(pool_store, args, message):
    before = contents(pool_store)
    assert refused(farm(pool_store, "generate", "--pool", "q", "--count", "4", "--no-progress", *args), message)
    assert contents(pool_store) == before


def test_a_huge_count_is_refused_by_the_real_command_before_the_store_is_touched(tmp_path):
    result = subprocess.run(["farm", "generate", "--pool", "huge", "--count", "100000000000"], capture_output=True,
                            text=True, env=farm_env(tmp_path), timeout=300, check=False)
    assert result.returncode == 1 and "count: must be 1 to 100_000_000 a pool" in result.stderr, result.stderr
    assert not (tmp_path / "store").exists(), "a refused generate wrote something"


def test_answers_from_a_device_are_read_no_further_than_the_limit(pool_store):
    before = contents(pool_store)
    assert refused(farm(pool_store, "answers", "ingest", "/dev/zero"),
                   "/dev/zero holds more than 33554432 bytes, over the limit of 33554432; split it")
    assert contents(pool_store) == before


def test_answers_from_stdin_are_ingested_within_the_limit_and_refused_over_it(pool_store):
    cid = read_keys(pool_store, "p")[0]["id"]
    line = json.dumps({"pool": "p", "captcha_id": cid, "answer": "AB12", "risk": "attacker",
                       "time": "2026-11-23T10:00:00Z"}) + "\n"
    before = contents(pool_store)
    assert refused(farm(pool_store, "answers", "ingest", "-", "--max-bytes", "1000", input=line * 20),
                   "stdin holds more than 1000 bytes, over the limit of 1000")
    assert contents(pool_store) == before
    result = farm(pool_store, "answers", "ingest", "-", "--json", input=line)
    assert result.exit_code == 0 and json.loads(result.output)["accepted"] == 1, result.output


def test_answers_from_a_pipe_into_the_real_command_are_refused_over_the_limit(tmp_path, pool_store):
    before = contents(pool_store)
    result = subprocess.run(["farm", "answers", "ingest", "-", "--max-bytes", "1000"], input=b"x" * 100_000,
                            capture_output=True, env=farm_env(tmp_path, FARM_STORE=pool_store.url), timeout=300,
                            check=False)
    assert result.returncode == 1 and b"stdin holds more than 1000 bytes" in result.stderr, result.stderr
    assert contents(pool_store) == before


def white_png(width: int, height: int) -> bytes:
    """A valid white grey PNG compressed row by row: a few hundred KB on disk, width * height bytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze, row = zlib.compressobj(9), b"\x00" + b"\xff" * width  # filter byte 0, then the row
    pixels = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(20000, 20000), (5000, 5000)])
def test_solve_refuses_an_image_too_large_naming_the_file_and_the_largest_size(tmp_path, pool_store, size):
    path = tmp_path / "big.png"
    path.write_bytes(white_png(*size))
    assert refused(farm(pool_store, "solve", str(path)), f"{path}: ",
                   "larger than farm solve reads (16777216 pixels at most, e.g. 4096x4096)")


def test_solve_still_reads_a_captcha(tmp_path, pool_store, substitute):
    from farm.core.schemes import get_scheme
    captcha = get_scheme("classic").sample(3)
    path = tmp_path / "c.png"
    Image.fromarray(captcha.image).save(path)
    result = farm(pool_store, "solve", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"file": str(path), "text": substitute.read([captcha.image])[0]}]


def test_preview_into_a_missing_directory_names_it_and_creates_nothing(tmp_path, pool_store):
    before = contents(pool_store)
    result = farm(pool_store, "preview", "--pool", "p", "-o", str(tmp_path / "missing/dir/s.png"))
    assert refused(result, f"--output: the directory {tmp_path / 'missing/dir'} does not exist")
    assert not (tmp_path / "missing").exists() and contents(pool_store) == before
    assert refused(farm(pool_store, "preview", "--pool", "p", "-o", str(tmp_path / "sheet")),
                   "--output: sheet needs an image extension such as .png")
    assert farm(pool_store, "preview", "--pool", "p", "-o", str(tmp_path / "s.png")).exit_code == 0
