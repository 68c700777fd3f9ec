"""One way from an error to what `farm` prints: a FarmError is `Error: <message>` and exit 1, a bug keeps its traceback."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from farm.cli import main
from tests.conftest import farm_env

# The `farm` group with three commands added that raise as library code does: a real process
# runs it, so stderr and the exit status are what a shell sees.
FARM_WITH_FAULTS = """
import sys

from farm.cli import main
from farm.exceptions import PoolError


@main.command("fails-politely")
def fails_politely():
    raise PoolError("pool: 'q' does not exist in file:///s; see `farm pool list`")


@main.group("nested")
def nested():
    pass


@nested.command("fails-politely")
def nested_fails_politely():
    raise PoolError("pool: 'q' is not complete yet; wait for its generate")


@main.command("has-a-bug")
@main.argument("kind")
def has_a_bug(kind):
    if kind == "value":
        int("not a number")  # what a bug's ValueError looks like: no message meant for an operator
    {}["missing"]


main()
""".replace("@main.argument", "@__import__('click').argument")


def run_farm(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FARM_WITH_FAULTS, *args], capture_output=True, text=True,
                          env=farm_env(tmp_path), timeout=120, check=False)


@pytest.mark.parametrize("args,message", [
    (["fails-politely"], "pool: 'q' does not exist in file:///s; see `farm pool list`"),
    (["nested", "fails-politely"], "pool: 'q' is not complete yet; wait for its generate"),
])
def test_a_farm_error_in_any_command_is_its_message_and_exit_1_without_a_traceback(tmp_path, args, message):
    result = run_farm(tmp_path, *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"Error: {message}\n" and result.stdout == ""


@pytest.mark.parametrize("kind,last_line", [
    ("value", "ValueError: invalid literal for int() with base 10: 'not a number'"),
    ("key", "KeyError: 'missing'"),
])
def test_a_bug_in_a_command_keeps_its_traceback(tmp_path, kind, last_line):
    result = run_farm(tmp_path, "has-a-bug", kind)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
    lines = result.stderr.rstrip().splitlines()
    assert lines[-1] == last_line and not any(line.startswith("Error:") for line in lines), result.stderr


@pytest.mark.parametrize("args,message", [
    (["job", "status", "zz"], "job: 'zz' is not a job id (12 hex digits, as `farm generate --no-wait` prints)"),
    (["pool", "stats", "nope"], "pool: 'nope' does not exist in {store}; see `farm pool list`"),
    (["pool", "delete", "../x", "--yes"], "pool: '../x' must be letters, digits, '-', '_' or '.', not starting with '.'"),
    (["pool", "draw", "nope"], "pool: 'nope' does not exist in {store}; see `farm pool list`"),
    (["preview", "--pool", "nope", "-o", "{tmp}/sheet.png"], "pool: 'nope' does not exist in {store}; see `farm pool list`"),
    (["checkpoint", "show", "v9"], "version: 'v9' is not in the registry; see `farm checkpoint list`"),
    (["checkpoint", "show"], "the registry is empty; publish a version with `farm checkpoint publish FOLDER`"),
    (["checkpoint", "rollback"], "rollback: the registry is empty; nothing to roll back"),
    (["study", "report", "nope"], "study: 'nope' does not exist; create it with `farm study create nope --pool ...`"),
    (["study", "create", "s", "--pool", "p=x"], "pool: 'p=x': the count after '=' must be a whole number, like p=3"),
    (["study", "create", "s"], "pools: name at least one with --pool NAME[=N] or --config FILE"),
    (["zoo", "train", "nope"], "zoo: unknown solver 'nope'; known: crnn-b, resnet-a, position-a, transformer-a"),
    (["zoo", "train"], "name zoo solvers to train, or use --all (see `farm zoo list`)"),
    (["train", "--out", "{tmp}/sub", "--mix", "bogus=x"], "mix: weight of 'bogus' is not a number: 'x'"),
    (["train", "--out", "{tmp}/sub", "--mix", "bogus=1"], "scheme: unknown scheme 'bogus'; known: classic"),
    (["train", "--out", "{tmp}/sub", "--alphabet", "aa"], "alphabet: 'aa' repeats 'a'"),
    (["evaluate", "--chain", "otsu"], "--chain: clean-up chains apply to a pool; add --pool P"),
    (["evaluate", "--pool", "p", "--chain", "otsu", "--no-preprocess"],
     "--chain: --no-preprocess reads the pool as it is only; drop one of the two"),
    (["answers", "ingest", "-", "--max-records", "0"], "max-records: must be positive (got 0)"),
    (["serve", "--redis", "redis://127.0.0.1:no/0"],  # the Redis client's own ValueError, named after the setting
     "FARM_REDIS: 'redis://127.0.0.1:no/0' is not a URL the Redis client reads (Port could not be cast to integer "
     "value as 'no')"),
])
def test_each_command_names_what_is_wrong_and_exits_1(tmp_path, monkeypatch, args, message):
    store = (tmp_path / "store").as_uri()
    monkeypatch.setenv("FARM_STORE", store)
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args], input="")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: {message.format(store=store)}" in result.stderr, result.output
    assert not (tmp_path / "store").exists() and not (tmp_path / "sub").exists()  # refused before writing


def test_a_store_url_that_is_no_store_is_named(monkeypatch):
    monkeypatch.setenv("FARM_STORE", "ftp://x")
    result = CliRunner().invoke(main, ["pool", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr == "Error: store: unsupported URL 'ftp://x'; use file:///path or s3://bucket/prefix\n"


def test_a_study_plot_in_a_format_matplotlib_does_not_write_is_a_setting_error_before_drawing(tmp_path):
    from farm.exceptions import SettingError
    from farm.ops.studies import plot_report

    with pytest.raises(SettingError, match=r"^plot: report\.xyz needs an extension matplotlib writes, such as \.png"):
        plot_report({}, tmp_path / "report.xyz")  # {}: nothing is read before the check
    assert list(tmp_path.iterdir()) == []
