"""Pools: layout, stable ids that reveal nothing, resume after interruption, comparable methods, clear errors."""

import json
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from farm.core.attacks.settings import declaration
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.layout import captcha_id, decode_png
from farm.storage.pools import read_keys
from farm.storage.manifest import read_manifest
from farm.core.seeds import Seeds
from tests.conftest import farm_env

SECRET = b"test-secret-not-for-production"


def make(store, substitute, pool="p", **spec):
    """A pool of the paper's plain setting, in 5 steps where the method takes steps."""
    short = {"steps": 5} if "steps" in declaration(spec.get("method", "iterative")) else {}
    spec = PoolSpec.from_preset("paper", **{"count": 20, "shard_size": 8, **short, **spec})
    return generate_pool(store, pool, spec, [substitute], SECRET, progress=False, processes=1)


def test_a_pool_lands_in_the_layout_with_answers_only_in_keys(store, substitute):
    summary = make(store, substitute)
    assert summary["count"] == 20 and summary["generated"] == 20
    keys = store.list("pools/p/")
    images = [k for k in keys if k.startswith("pools/p/images/")]
    assert len(images) == 20 and all(k.endswith(".png") for k in images)
    assert [k for k in keys if "/keys/" in k] == [f"pools/p/keys/{i:05d}.jsonl" for i in range(3)]
    manifest = read_manifest(store, "p")
    assert manifest["complete"] == 20 and manifest["status"] == "complete" and len(manifest["shards"]) == 3
    records = read_keys(store, "p")
    answers = {r["answer"] for r in records}
    public = json.dumps(manifest) + " ".join(images)
    assert not any(a in public for a in answers), "an answer leaked into a public name or the manifest"
    for r in records:
        for field in ("id", "answer", "reading", "reading_clean", "linf", "l2", "ssim", "psnr", "changed",
                      "glyph_changed", "substitute"):
            assert field in r


def test_ids_are_stable_hmacs_of_position_not_of_answer(store, substitute):
    make(store, substitute)
    records = read_keys(store, "p")
    assert [r["id"] for r in records] == [captcha_id(SECRET, "p", r["shard"], r["index"]) for r in records]
    assert captcha_id(SECRET, "p", 0, 0) != captcha_id(b"other", "p", 0, 0)
    assert len({r["id"] for r in records}) == len(records)


def test_png_round_trip_keeps_the_substitutes_reading(store, substitute):
    make(store, substitute, count=16)
    for r in read_keys(store, "p"):
        image = decode_png(store.get(f"pools/p/images/{r['id']}.png"))
        assert substitute.read([image])[0] == r["reading"]


def test_every_method_perturbs_the_same_clean_captchas_index_by_index(store, substitute):
    for method in ("none", "direct", "iterative"):
        make(store, substitute, pool=method, method=method, count=8)
    keys = {m: read_keys(store, m) for m in ("none", "direct", "iterative")}
    assert [r["answer"] for r in keys["none"]] == [r["answer"] for r in keys["direct"]] == [r["answer"] for r in keys["iterative"]]
    assert all(r["linf"] == 0 for r in keys["none"])
    # captchas the substitute already misreads stop at once, unperturbed; measures keep 6 decimals
    assert all(r["linf"] <= 8 / 255 + 1e-5 for r in keys["iterative"])
    assert sum(r["linf"] > 0 for r in keys["iterative"]) >= len(keys["iterative"]) // 2


def test_mask_keeps_pixels_outside_it(store, substitute):
    make(store, substitute, pool="g", mask="glyph", count=8)
    from farm.ops.shard import render_shard
    clean = render_shard(PoolSpec(count=8, shard_size=8, mask="glyph"), 0, Seeds(SECRET))
    for k, r in enumerate(read_keys(store, "g")):
        adv = decode_png(store.get(f"pools/g/images/{r['id']}.png"))
        assert (adv[~clean.glyphs[k]] == clean.images[k][~clean.glyphs[k]]).all()


def test_a_user_png_mask_is_used_and_a_bad_one_refused(tmp_path, store, substitute):
    allowed = np.zeros((60, 160), np.uint8)
    allowed[:, :40] = 255
    Image.fromarray(allowed).save(tmp_path / "left.png")
    make(store, substitute, pool="u", mask=str(tmp_path / "left.png"), count=8, method="direct")
    from farm.ops.shard import render_shard
    clean = render_shard(PoolSpec(count=8, shard_size=8, mask="full"), 0, Seeds(SECRET))
    for k, r in enumerate(read_keys(store, "u")):
        adv = decode_png(store.get(f"pools/u/images/{r['id']}.png"))
        assert (adv[:, 40:] == clean.images[k][:, 40:]).all() and (adv[:, :40] != clean.images[k][:, :40]).any()
    Image.fromarray(allowed[:30]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="160x60"):
        PoolSpec(count=1, mask=str(tmp_path / "small.png")).validate()


def test_same_arguments_same_bytes(tmp_path, substitute):
    from farm.storage.store import LocalStore
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    make(a, substitute, count=12)
    make(b, substitute, count=12)
    for key in a.list("pools/p/images/") + a.list("pools/p/keys/"):
        assert a.get(key) == b.get(key), key


def test_an_existing_pool_refuses_another_spec(store, substitute):
    from farm.exceptions import PoolError
    make(store, substitute, count=8)
    with pytest.raises(PoolError, match="eps"):
        make(store, substitute, count=8, eps=4 / 255)


def run_farm(tmp_path, *args, check=True, **env):
    return subprocess.run(["farm", *args], capture_output=True, text=True, env=farm_env(tmp_path, **env),
                          check=check, timeout=600)


@pytest.mark.slow
def test_an_interrupted_generate_resumes_without_duplicates(tmp_path):
    args = ["generate", "--pool", "r", "--count", "96", "--shard-size", "16", "--steps", "4", "--no-progress"]
    store = tmp_path / "store"
    process = subprocess.Popen(["farm", *args], env=farm_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not (store / "pools/r/keys/00001.jsonl").exists():
        time.sleep(0.05)
    process.kill()
    process.wait()
    done_before = len(list((store / "pools/r/keys").glob("*.jsonl")))
    assert 1 <= done_before < 6, "the run should have been killed mid-pool"
    result = run_farm(tmp_path, *args, "--json")
    summary = json.loads(result.stdout)
    assert summary["count"] == 96 and summary["skipped_shards"] == done_before
    images = list((store / "pools/r/images").glob("*.png"))
    assert len(images) == 96
    records = [json.loads(line) for f in sorted((store / "pools/r/keys").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == list(range(96))
    # and the bytes match an uninterrupted run
    other = tmp_path / "other"
    other.mkdir()
    run_farm(other, *args)
    for image in images:
        assert image.read_bytes() == (other / "store/pools/r/images" / image.name).read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--scheme", "nope"], "scheme"),
    (["--method", "fgsm"], "method"),
    (["--eps", "0"], "eps"),
    (["--eps", "1.5"], "eps"),
    (["--count", "0"], "count"),
    (["--mask", "/no/such/mask.png"], "mask"),
    (["--eps", "eight"], "eps"),
    (["--seed=-1"], "--seed): must be a whole number from 0 to 2**64 - 1"),
    (["--seed", str(2**64)], "--seed): must be a whole number from 0 to 2**64 - 1"),
])
def test_bad_arguments_exit_nonzero_with_a_clear_message_and_write_nothing(tmp_path, args, message):
    base = {"--pool": "bad", "--count": "4"}
    argv = ["generate"]
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    result = run_farm(tmp_path, *argv, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr.lower()
    assert not (tmp_path / "store").exists(), "a refused generate wrote something"


def test_preview_writes_a_contact_sheet(tmp_path, store, substitute):
    from farm.ops.preview import contact_sheet, pool_pairs
    make(store, substitute, count=6)
    sheet = contact_sheet(pool_pairs(store, "p", 4))
    assert sheet.size[0] > 3 * 160 and sheet.size[1] > 4 * 60
    pixels = np.asarray(sheet)
    assert pixels.std() > 10


def test_preview_judges_the_substitutes_reading_as_a_typed_answer_is(store, substitute):
    from farm.core.charset import answer_matches
    from farm.storage.layout import keys_key
    from farm.storage.pools import read_keys
    from farm.ops.preview import pool_pairs
    make(store, substitute, count=6, method="none")  # unperturbed: the substitute reads most
    records = read_keys(store, "p")
    read = [r for r in records if answer_matches(substitute.charset, r["answer"], r["reading"])]
    assert any(r["answer"] != r["answer"].lower() for r in read), "no read captcha with a letter: nothing to judge"
    # a scheme that renders lower case, read by an upper-case charset: case means nothing
    lowered = "".join(json.dumps({**r, "answer": r["answer"].lower()}, sort_keys=True) + "\n" for r in records)
    store.put(keys_key("p", 0), lowered.encode())
    pairs = pool_pairs(store, "p", 6)
    assert [p[0]["solved"] for p in pairs] == [r in read for r in records]


OUT_OF_RANGE = [
    ({"alpha": -1}, r"alpha: the step size must be in \(0, eps\]"),
    ({"diversity": 5}, r"diversity: a probability, must be in \[0, 1\]"),
    ({"smoothing": -3}, r"smoothing: .* must be in \[0, 10\]"),
    ({"method": "momentum", "decay": -1}, r"decay: .* must be in \[0, 2\]"),
    ({"norm": "l2", "eps": 1e4}, r"eps: must be in \(0, 8\] for l2"),
    ({"count": 10**11}, "count: must be 1 to 100_000_000"),
    ({"shard_size": 100_000}, "shard-size: must be 1 to 8192"),
    ({"count": 10**8, "shard_size": 10}, "over the limit of 1_000_000; use --shard-size 100 or more"),
    ({"diversity": "5"}, "diversity: must be a number"),
    ({"steps": 2.5}, "steps: must be a whole number"),
    ({"margin": -1}, r"margin: must be 0 to 16 pixels \(got -1\)"),
    ({"margin": 1000}, r"margin: must be 0 to 16 pixels \(got 1000\)"),
]


@pytest.mark.parametrize("fields,message", OUT_OF_RANGE)
def test_a_spec_out_of_range_is_refused_by_the_api_and_a_task_before_anything_is_written(store, substitute, fields,
                                                                                          message):
    from workers.tasks import parse_shard
    spec = PoolSpec(**{"count": 8, "shard_size": 8, **fields})
    with pytest.raises(ValueError, match=message):
        spec.validate()
    with pytest.raises(ValueError, match=message):
        generate_pool(store, "p", spec, [substitute], SECRET, progress=False, processes=1)
    assert not store.root.exists(), "a refused generate wrote something"
    with pytest.raises(ValueError, match=message):  # a task's JSON spec
        parse_shard("p", 0, 8, json.loads(json.dumps(spec.to_dict())))


def test_a_spec_from_task_json_refuses_a_seed_numpy_cannot_take():
    for seed in (-1, 2**64, "7", 1.5, True):
        with pytest.raises(ValueError, match=r"seed \(--seed\): must be a whole number from 0 to 2\*\*64 - 1"):
            PoolSpec(count=8, seed=seed).validate()
    assert PoolSpec(count=8, seed=2**64 - 1).validate().seed == 2**64 - 1


def test_the_largest_seed_accepted_makes_a_pool(store, substitute):
    make(store, substitute, count=4, method="momentum", diversity=1.0, seed=2**64 - 1)  # was an overflow in torch
    assert read_manifest(store, "p")["complete"] == 4


def test_the_cli_the_python_api_and_a_task_make_the_same_default_pool(tmp_path, substitute, monkeypatch):
    from click.testing import CliRunner

    from farm.cli import main
    from farm.core.presets import PRESETS
    from farm.ops.shard import attack_solvers, generate_shard
    from farm.storage.store import LocalStore
    from workers.tasks import parse_shard

    monkeypatch.setenv("FARM_STORE", f"file://{tmp_path / 'cli'}")
    result = CliRunner().invoke(main, ["generate", "--pool", "p", "--count", "4", "--shard-size", "4", "--steps", "2",
                                       "--no-progress"])  # the defaults, but for two steps
    assert result.exit_code == 0, result.output
    cli = LocalStore(tmp_path / "cli")
    stored = read_manifest(cli, "p")["spec"]
    # classic draws in colour, where a generation naming no family is of ink: the edge preset's colour values
    api = PoolSpec.from_preset("edge", count=4, shard_size=4, steps=2)
    assert api.to_dict() == stored and api.eps == PRESETS["edge"]["colour"]["eps"]
    task = parse_shard("p", 0, 4, json.loads(json.dumps(stored)))
    named = parse_shard("p", 0, 4, {"preset": "edge", "count": 4, "shard_size": 4, "steps": 2})
    assert task == named == api
    stores = {"api": LocalStore(tmp_path / "api"), "task": LocalStore(tmp_path / "task")}
    solvers = attack_solvers(api, substitute)  # the substitute and the preset's donors, as the CLI attacks with
    generate_pool(stores["api"], "p", api, solvers, SECRET, progress=False, processes=1)
    generate_shard(stores["task"], "p", 0, task, solvers, SECRET)
    images = cli.list("pools/p/images/")
    assert len(images) == 4
    for name, store in stores.items():
        assert store.list("pools/p/images/") == images, name
        assert all(store.get(key) == cli.get(key) for key in images), f"the {name}'s pool differs from the CLI's"


def test_a_setting_the_method_does_not_take_is_refused_by_the_api_and_a_task_naming_a_preset():
    from workers.tasks import parse_shard
    with pytest.raises(ValueError, match="decay: only momentum, robust, edge, warped_edge and generator take it, "
                                         "not iterative"):
        PoolSpec.from_preset("recommended", count=8, method="iterative", decay=0.5)
    with pytest.raises(ValueError, match="steps: only iterative, momentum, robust, warp, edge, warped_edge and "
                                         "generator take it, not direct"):
        parse_shard("p", 0, 8, {"preset": "paper", "count": 8, "method": "direct", "steps": 3})
    with pytest.raises(ValueError, match="preset: unknown preset 'best'; known: recommended, paper"):
        parse_shard("p", 0, 8, {"preset": "best", "count": 8})


# Specs as manifests written before settings were declared hold them: every field, the unused ones too
STORED = {
    "farm generate's defaults": {"alpha": None, "count": 4, "decay": 1.0, "diversity": 0.7, "early_stop": False,
                                 "ensemble": [], "eps": 32 / 255, "eps_glyph": 8 / 255, "margin": 1, "mask": "full",
                                 "method": "momentum", "norm": "linf", "random_start": False, "scheme": "classic",
                                 "seed": 0, "shard_size": 4, "smoothing": 2.0, "source": None, "steps": 2},
    "iterative carrying the defaults' switches": {
        "alpha": None, "count": 4, "decay": 1.0, "diversity": 0.7, "early_stop": False, "ensemble": [],
        "eps": 8 / 255, "eps_glyph": None, "margin": 1, "mask": "full", "method": "iterative", "norm": "linf",
        "random_start": False, "scheme": "classic", "seed": 0, "shard_size": 4, "smoothing": 2.0, "source": None,
        "steps": 3},
    "clean control": {"alpha": None, "count": 4, "decay": 1.0, "diversity": 0.7, "early_stop": False, "ensemble": [],
                      "eps": 32 / 255, "eps_glyph": 8 / 255, "margin": 1, "mask": "full", "method": "none",
                      "norm": "linf", "random_start": False, "scheme": "classic", "seed": 0, "shard_size": 4,
                      "smoothing": 2.0, "source": None, "steps": 20},
}


@pytest.mark.parametrize("name", STORED)
def test_a_stored_spec_reads_back_as_it_was_written(name):
    stored = STORED[name]
    spec = PoolSpec.from_dict(json.loads(json.dumps(stored))).validate()
    assert {k: v for k, v in spec.to_dict().items() if k in stored} == stored
    assert PoolSpec.from_dict(spec.to_dict()) == spec


def test_a_stored_spec_without_the_fields_added_since_reads_as_its_pool_was_made():
    first = {k: v for k, v in STORED["iterative carrying the defaults' switches"].items()
             if k not in ("early_stop", "source")}  # written before either existed
    spec = PoolSpec.from_dict(first)
    assert spec.early_stop is True and spec.source is None and spec.diversity == 0.7
    robust = PoolSpec.from_dict({**first, "method": "robust"})
    assert robust.samples == 4 and robust.early_stop is None  # robust never stopped early


def test_farm_generate_has_an_option_for_every_declared_setting_showing_the_presets_value():
    from dataclasses import fields

    import click
    from click.testing import CliRunner

    from farm.cli import main
    from farm.cli.generate import generate
    from farm.core.attacks.settings import SETTINGS

    assert set(SETTINGS) <= {p.name for p in generate.params} and set(SETTINGS) <= {f.name for f in fields(PoolSpec)}
    context = click.Context(generate)
    shown = {p.name: p.get_help_record(context)[1] for p in generate.params if p.get_help_record(context)}
    for name, default in (("method", "momentum"), ("eps", "32/255"), ("steps", "20"), ("diversity", "0.7"),
                          ("early_stop", "no-early-stop"), ("mask", "full")):
        assert shown[name].endswith(f"[default: {default}]"), shown[name]
    assert shown["samples"].endswith("(robust only).  [default: 4]")  # one method's setting, its own default
    assert "--decay" in CliRunner().invoke(main, ["generate", "--help"]).output


def test_the_readme_lists_each_methods_settings_as_they_are_declared():
    from pathlib import Path

    from farm.core.attacks.settings import DECLARED, REFINE_STEP_OF, SETTINGS
    from farm.core.presets import shown

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| setting | " + " | ".join(DECLARED) + " |" in readme
    unset = {("generator", "alpha"): f"2.5 eps / {REFINE_STEP_OF}",  # a refining step is one of the recommended's
             ("generator", "dots"): "as trained"}
    for name in SETTINGS:
        cells = ["–" if name not in declared else unset.get((method, name), "2.5 eps / steps")
                 if declared[name].default is None else shown(declared[name].default, declared[name].pixels)
                 for method, declared in DECLARED.items()]
        assert f"| `--{name.replace('_', '-')}` | " + " | ".join(cells) + " |" in readme, name


@pytest.mark.parametrize("spec,message", [
    ({"preset": ["paper"], "count": 8}, r"preset: unknown preset \['paper'\]"),
    ({"preset": "paper"}, "spec: count is missing"),
    ({"preset": "paper", "count": 8, "colour": "red"}, r"spec: unknown field\(s\) colour"),
    ({"preset": "paper", "count": 8, "method": ["iterative"]}, "method: unknown method"),
    ({"preset": "paper", "count": 8, "eps": "8/255"}, "eps: must be a number"),
    ({"count": 8, "eps": "8/255"}, "eps: must be a number"),
])
def test_a_hostile_task_spec_is_refused_by_name(spec, message):
    from workers.tasks import parse_shard
    with pytest.raises(ValueError, match=message):
        parse_shard("p", 0, 8, spec)
