"""The perturbation generator: bounded like the default, reproducible, a perturbation per code, safetensors only."""

import json

import numpy as np
import pytest
import torch

from farm.core.attacks.methods import make_attack
from farm.core.checkpoint import load_solver
from farm.core.generator import GeneratorConfig, PerturbationGenerator, draw_codes, perturb_captchas
from farm.core.model import to_tensor
from farm.core.zoo_loading import load_member
from farm.exceptions import CheckpointError, HeldOutError, SettingError
from farm.ops.generator_training import GeneratorTraining, load_generator_dir, save_generator_dir, train_generator
from farm.storage import registry
from farm.storage.store import LocalStore
from tests.test_farm import redis_broker, redis_port  # noqa: F401 (fixtures)

H, W = 60, 160


def _captchas(n=3, seed=0):
    """Grey captchas with a block of 'glyphs', a two-level budget (8/255 on them, 32/255 off) and a mask."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, H, W), dtype=np.uint8)
    glyphs = np.zeros((n, H, W), bool)
    glyphs[:, 20:40, 30:120] = True
    budget = np.where(glyphs, 8 / 255, 32 / 255)
    allowed = np.ones((n, H, W), bool)
    allowed[:, :, :10] = False  # somewhere the attack may not act
    return images, glyphs, allowed, budget


def _generator(seed=0, gain=50.0):
    torch.manual_seed(seed)  # a large gain saturates the tanh: the budget is reached, and must hold
    return PerturbationGenerator(GeneratorConfig(gain=gain))


def test_perturbation_stays_within_the_two_level_budget_and_the_mask():
    images, glyphs, allowed, budget = _captchas()
    adv = perturb_captchas(_generator(), images, glyphs, allowed, budget, seeds=[1, 2, 3])
    change = np.abs(adv.astype(int) - images.astype(int))
    assert (change[glyphs] <= 8).all() and (change[~glyphs] <= 32).all()
    assert (change[~allowed] == 0).all()
    assert change[~glyphs & allowed].max() == 32  # the budget is there to be used


def test_same_seed_same_perturbation_whatever_the_batch():
    images, glyphs, allowed, budget = _captchas()
    model = _generator()
    together = perturb_captchas(model, images, glyphs, allowed, budget, seeds=[1, 2, 3])
    again = perturb_captchas(model, images, glyphs, allowed, budget, seeds=[1, 2, 3], batch_size=1)
    assert np.array_equal(together, again)


def test_different_codes_give_different_perturbations():
    images, glyphs, allowed, budget = _captchas(n=1)
    model = _generator(gain=2.0)
    first, second = (perturb_captchas(model, images, glyphs, allowed, budget, seeds=[s]) for s in (1, 2))
    assert (first != second).mean() > 0.05
    assert not torch.equal(draw_codes([1], (H, W), 4), draw_codes([2], (H, W), 4))


def test_weights_round_trip_through_safetensors_and_are_checked(tmp_path):
    images, glyphs, allowed, budget = _captchas()
    model = _generator(seed=3, gain=2.0)
    card = save_generator_dir(model, tmp_path / "g", trained_against=["substitute"])
    assert card["trained_against"] == ["substitute"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["card.json", "model.safetensors"]
    loaded = load_generator_dir(tmp_path / "g")
    assert np.array_equal(perturb_captchas(model, images, glyphs, allowed, budget, [1, 2, 3]),
                          perturb_captchas(loaded, images, glyphs, allowed, budget, [1, 2, 3]))
    weights = (tmp_path / "g" / "model.safetensors").read_bytes()
    (tmp_path / "g" / "model.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="sha256"):
        load_generator_dir(tmp_path / "g")


def test_refinement_starts_from_the_given_images_and_keeps_the_budget():
    substitute = load_solver(*registry.bundled())
    images, glyphs, allowed, budget = _captchas(n=2)
    start = perturb_captchas(_generator(), images, glyphs, allowed, budget, seeds=[1, 2])
    attack = make_attack("momentum", [substitute], eps=32 / 255, steps=1, alpha=1 / 255, early_stop=False)
    as_tensor = lambda a: torch.from_numpy(a).unsqueeze(1).float()  # noqa: E731
    x = as_tensor(images) / 255
    refined = attack(x, ["ab12", "cd34"], as_tensor(allowed).bool(), budget=as_tensor(budget),
                     start=as_tensor(start) / 255)
    fresh = attack(x, ["ab12", "cd34"], as_tensor(allowed).bool(), budget=as_tensor(budget))
    change = (refined - x).abs().squeeze(1).numpy() * 255
    assert (change <= budget * 255 + 1e-3).all() and (change[~allowed] == 0).all()
    assert (refined - as_tensor(start) / 255).abs().max() <= 1 / 255 + 1e-6  # one step of alpha from the start
    assert (fresh - x).abs().max() <= 1 / 255 + 1e-6  # without a start, one step from the clean images


def test_training_refuses_a_held_out_solver():
    with pytest.raises(HeldOutError, match="crnn-aug"):
        train_generator([load_solver(*registry.bundled()), load_member("crnn-aug")], GeneratorTraining(steps=1))


def test_a_colour_captcha_moves_each_channel_by_the_grey_perturbation():
    images, glyphs, allowed, budget = _captchas(2)
    mid = (images // 2 + 64).astype(np.uint8)  # no channel near 0 or 255: nothing is clipped
    colour = np.stack([mid, mid // 2 + 60, 255 - mid], axis=3)
    adv = perturb_captchas(_generator(), colour, glyphs, allowed, budget, [1, 2])
    change = adv.astype(int) - colour.astype(int)
    assert adv.shape == colour.shape
    for other in (1, 2):  # the same perturbation on every channel, up to its rounding to 8 bits
        assert np.abs(change[..., 0] - change[..., other]).max() <= 1
        assert (change[..., 0] == change[..., other]).mean() > 0.999
    assert (np.abs(change[glyphs]) <= 8).all() and (change[~allowed] == 0).all() and np.abs(change).max() == 32


def test_a_colour_generator_perturbs_each_channel_within_the_budget_and_refuses_grey_captchas():
    images, glyphs, allowed, budget = _captchas(2)
    colour = np.stack([images, images // 2 + 60, 255 - images], axis=3)
    torch.manual_seed(0)
    model = PerturbationGenerator(GeneratorConfig(gain=50.0, channels=3))
    adv = perturb_captchas(model, colour, glyphs, allowed, budget, [1, 2])
    change = adv.astype(int) - colour.astype(int)
    assert (np.abs(change[glyphs]) <= 8).all() and (change[~allowed] == 0).all()
    assert (change[..., 0] != change[..., 1]).mean() > 0.3  # a perturbation per channel
    with pytest.raises(SettingError, match="trained on colour captchas and these are grey"):
        perturb_captchas(model, images, glyphs, allowed, budget, [1, 2])


def test_training_reads_a_colour_scheme_in_colour_and_refuses_an_unknown_one_by_name():
    colour, grey = GeneratorTraining().model_config(), GeneratorTraining(scheme="lines").model_config()
    assert GeneratorTraining().scheme == "classic" and colour.channels == 3 and grey.channels == 1
    assert colour.dots == 8 and grey.dots == 0  # as the default pools: ink on colour, noise on grey
    with pytest.raises(SettingError, match="conversions: must be in"):
        GeneratorTraining(conversions=2).validate()
    with pytest.raises(SettingError, match="scheme: unknown scheme 'nope'"):
        GeneratorTraining(scheme="nope").validate()
    with pytest.raises(SettingError, match="unknown generator training settings \\['stepz'\\]"):
        GeneratorTraining.from_dict({"stepz": 3})
    assert GeneratorTraining.from_dict({"ensemble": ["crnn-b"]}).ensemble == ("crnn-b",)


def test_a_centred_generator_takes_away_the_pattern_its_captchas_share():
    """One captcha, many codes: what the codes do not change is a shared pattern; centring removes it."""
    images, glyphs, allowed, budget = _captchas(n=1)
    many = [np.repeat(a, 64, axis=0) for a in (images, glyphs, allowed, budget)]
    seeds = list(range(64))

    def shared(model):  # the pool's mean perturbation, per budget: what an attacker estimates and subtracts
        adv = perturb_captchas(model, *many[:1], many[1], many[2], many[3], seeds)
        return np.abs((adv.astype(float) - many[0]).mean(0) / (many[3][0] * 255))[allowed[0]].mean()

    torch.manual_seed(0)
    plain = PerturbationGenerator(GeneratorConfig(gain=2.0))
    torch.manual_seed(0)
    centred = PerturbationGenerator(GeneratorConfig(gain=2.0, centred=True))
    centred.load_state_dict({**plain.state_dict(), "centre": centred.centre}, strict=True)
    centred.train()  # calibrate the running mean on the captchas, as training does
    x = torch.from_numpy(many[0][:32]).unsqueeze(1).float() / 255
    as_tensor = lambda a: torch.from_numpy(a[:32]).unsqueeze(1).float()  # noqa: E731
    with torch.no_grad():
        for _ in range(300):
            centred(x, as_tensor(many[1]), draw_codes(seeds[:32], (H, W), 4), as_tensor(many[3]), as_tensor(many[2]))
    assert shared(plain) > 0.3 and shared(centred) < shared(plain) / 3, (shared(plain), shared(centred))


# --- the generator as a method, an artefact of the registry, a command and a task ---------------------------------

def _without_generator(card: dict) -> dict:
    return {k: v for k, v in card.items() if k != "generator"}


def _published_generator(store, seed=0):
    """v1 (the bundled substitute, published without a generator) and v2: v1 with a small random generator."""
    from farm.core.generator import generator_bytes, generator_card

    weights, card = registry.bundled()
    registry.publish(store, weights, _without_generator(card))
    model = _generator(seed=seed, gain=2.0)
    data = generator_bytes(model)
    return registry.with_generator(store, "v1", data, generator_card(model, data, trained_against={"version": "v1"}))


def _attack_inputs(colour=False, n=3):
    images, glyphs, allowed, budget = _captchas(n)
    as_tensor = lambda a: torch.from_numpy(np.asarray(a)).unsqueeze(1).float()  # noqa: E731
    x = as_tensor(images) / 255
    if colour:
        x = torch.cat([x, x * 0.5 + 0.2, 1 - x], 1)
    return x, as_tensor(glyphs).bool(), as_tensor(allowed).bool(), as_tensor(budget)


@pytest.mark.parametrize("colour", [False, True])
def test_the_generator_method_runs_the_versions_generator_within_budget_and_mask(store, colour):
    version = _published_generator(store)
    solver = registry.load(store, version)
    x, glyphs, allowed, budget = _attack_inputs(colour)
    labels = ["ab12", "cd34", "ef56"]
    plain = make_attack("generator", [solver], eps=32 / 255)(x, labels, allowed, budget=budget, glyphs=glyphs)
    change = (plain - x).abs() * 255
    assert (change <= budget * 255 + 1e-3).all() and (change * ~allowed == 0).all() and change.max() > 30
    again = make_attack("generator", [solver], eps=32 / 255)(x, labels, allowed, budget=budget, glyphs=glyphs)
    assert torch.equal(plain, again)  # seeded: a shard writes the same bytes every run
    refined = make_attack("generator", [solver], eps=32 / 255, steps=2)(x, labels, allowed, budget=budget,
                                                                          glyphs=glyphs)
    moved = (refined - plain).abs() * 255
    assert 0 < moved.max() <= 2 * 2.5 * 32 / 20 + 1e-3  # two refining steps of the recommended's length
    assert ((refined - x).abs() * 255 <= budget * 255 + 1e-3).all()


def test_a_generator_with_a_dot_placer_puts_its_dots_on_the_glyphs_edges_unless_told_none(store, tmp_path):
    from farm.core.generator import generator_bytes, generator_card

    weights, card = registry.bundled()
    registry.publish(store, weights, _without_generator(card))
    torch.manual_seed(0)
    model = PerturbationGenerator(GeneratorConfig(gain=2.0, channels=3, dots=4))
    data = generator_bytes(model)
    solver = registry.load(store, registry.with_generator(store, "v1", data, generator_card(model, data)))
    x, glyphs, allowed, budget = _attack_inputs(colour=True)
    labels = ["ab12", "cd34", "ef56"]
    dotted = make_attack("generator", [solver], eps=32 / 255)(x, labels, allowed, budget=budget, glyphs=glyphs)
    plain = make_attack("generator", [solver], eps=32 / 255, dots=0)(x, labels, allowed, budget=budget, glyphs=glyphs)
    inked = ((dotted - x).abs() * 255 > 33).any(1)  # past the noise's budget: a dot's ink
    near = torch.nn.functional.max_pool2d(glyphs.float(), 15, 1, 7)[:, 0] > 0  # the glyphs and 7 px around
    assert inked.any() and not inked[~near].any()
    assert ((plain - x).abs() * 255 <= budget * 255 + 1e-3).all()
    other = LocalStore(tmp_path / "other")
    noise_only = make_attack("generator", [registry.load(other, _published_generator(other))], eps=32 / 255, dots=2)
    with pytest.raises(SettingError, match="has no dot placer.*--dots 0"):
        noise_only(x, labels, allowed, budget=budget, glyphs=glyphs)


def test_the_generator_method_needs_a_generator_glyphs_and_no_target(store, substitute):
    x, glyphs, allowed, budget = _attack_inputs()
    with pytest.raises(SettingError, match="has no trained generator; train one with `farm generator train`"):
        make_attack("generator", [substitute])(x, ["a", "b", "c"], allowed, glyphs=glyphs)
    solver = registry.load(store, _published_generator(store))
    with pytest.raises(ValueError, match="glyphs: the generator reads the glyph masks"):
        make_attack("generator", [solver])(x, ["a", "b", "c"], allowed)
    with pytest.raises(ValueError, match="targets"):
        make_attack("generator", [solver])(x, ["a", "b", "c"], allowed, targets=["x", "y", "z"], glyphs=glyphs)
    with pytest.raises(SettingError, match="steps: refining steps"):
        make_attack("generator", [solver], steps=-1)
    with pytest.raises(SettingError, match="norm: must be one of linf"):
        make_attack("generator", [solver], norm="l2")


def test_a_generator_is_stored_beside_its_version_checked_and_inherited_by_later_versions(store):
    from farm.core.generator import generator_bytes, generator_card

    v2 = _published_generator(store)
    assert v2 == "v2" and registry.generation(store, "v2") == registry.generation(store, "v1") == 1
    assert registry.card(store, "v2")["sha256"] == registry.card(store, "v1")["sha256"]  # the same substitute
    assert registry.family(store, "v2", mode="RGB") == registry.family(store, "v1", mode="RGB") == "ink"
    assert registry.load(store, "v1").generator is None and registry.load(store, "v2").generator is not None
    weights, card = registry.bundled()
    from safetensors.torch import load, save
    tensors = load(weights)  # another substitute (a fine-tune's), with no generator of its own
    tensors[sorted(tensors)[0]] += 1e-4
    v3 = registry.publish(store, save(tensors), {k: v for k, v in _without_generator(card).items() if k != "sha256"})
    assert registry.generator_version(store, v3) == "v2" and registry.load(store, v3).generator is not None
    assert registry.generation(store, v3) == 2
    model = _generator(seed=1, gain=2.0)
    data = generator_bytes(model)
    with pytest.raises(CheckpointError, match="names a generator but no generator weights"):
        registry.publish(store, weights, {**card, "generator": generator_card(model, data)})
    with pytest.raises(CheckpointError, match="card names no generator"):
        registry.publish(store, weights, _without_generator(card), generator=data)
    with pytest.raises(CheckpointError, match="generator: weights: sha256 does not match"):
        registry.publish(store, weights, {**card, "generator": generator_card(model, data)},
                         generator=data[:-1] + bytes([data[-1] ^ 1]))
    assert registry.versions(store) == ["v1", "v2", "v3"]  # nothing refused was stored
    key = "checkpoints/v2/generator.safetensors"
    store.put(key, store.get(key)[:-1] + b"\x00")  # corrupt on the store
    registry._CACHE.clear()
    with pytest.raises(CheckpointError, match="version v2: its generator is refused: weights: sha256"):
        registry.load(store, "v2")


def test_a_training_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(substitute, tmp_path):
    config = dict(captchas=24, steps=4, batch_size=2, ensemble=(), dots=0)
    straight, _ = train_generator([substitute], GeneratorTraining(**config), progress=False)
    _, summary = train_generator([substitute], GeneratorTraining(**config, cpu_minutes=0), progress=False,
                                       state=tmp_path / "run")
    assert summary["steps"] == 1
    resumed, summary = train_generator([substitute], GeneratorTraining(**config), progress=False,
                                       state=tmp_path / "run")
    assert summary["steps"] == 4
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert all(p.requires_grad for p in substitute.model.parameters())  # given back as they were
    with pytest.raises(SettingError, match="differs in lr"):
        train_generator([substitute], GeneratorTraining(**config, lr=0.1), progress=False, state=tmp_path / "run")


def test_farm_generator_train_publishes_a_version_that_generate_uses(tmp_path):
    from click.testing import CliRunner

    from farm.cli import main

    env = {"FARM_STORE": f"file://{tmp_path / 'store'}"}
    args = ["generator", "train", "--steps", "2", "--captchas", "16", "--batch-size", "2", "--no-donors",
            "--dots", "0",
            "--work", str(tmp_path / "work"), "--json"]
    runner = CliRunner()
    stopped = runner.invoke(main, [*args, "--cpu-minutes", "0"], env=env)
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(stopped.output)["complete"] is False and json.loads(stopped.output)["version"] is None
    done = runner.invoke(main, args, env=env)
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["complete"] and result["steps"] == 2 and result["version"] == registry.current(
        LocalStore(tmp_path / "store"))["version"]
    made = runner.invoke(main, ["generate", "--pool", "g", "--method", "generator", "--count", "8", "--no-progress"],
                         env=env)
    assert made.exit_code == 0, made.output
    assert f"with the generator of {result['version']}" in made.output
    rows = json.loads(runner.invoke(main, ["checkpoint", "list", "--json"], env=env).output)
    listed = {r["version"]: r for r in rows}
    assert listed[result["version"]]["generator"] == result["version"]
    assert listed["v1"]["generator"] == "v1"  # the bundled generator, published with v1
    shown = runner.invoke(main, ["checkpoint", "list"], env=env).output
    assert f"{result['version']}     gen 1" in shown and "+gen" in shown
    store, folder = LocalStore(tmp_path / "store"), tmp_path / "exported"  # a version copied out and published again
    folder.mkdir()
    for name in ("model.safetensors", "card.json"):
        (folder / name).write_bytes(store.get(f"checkpoints/{result['version']}/{name}"))
    missing = runner.invoke(main, ["checkpoint", "publish", str(folder)], env=env)
    assert missing.exit_code == 1 and "names a generator but no generator weights were given" in missing.output
    (folder / "generator.safetensors").write_bytes(store.get(f"checkpoints/{result['version']}/generator.safetensors"))
    again = runner.invoke(main, ["checkpoint", "publish", str(folder), "--json"], env=env)
    assert again.exit_code == 0, again.output
    assert registry.load(store, json.loads(again.output)["version"]).generator is not None


def test_a_fresh_machine_makes_generator_pools_with_the_bundled_generator(tmp_path):
    from click.testing import CliRunner

    from farm.cli import main

    env = {"FARM_STORE": f"file://{tmp_path / 'store'}"}
    made = CliRunner().invoke(main, ["generate", "--pool", "g", "--method", "generator", "--count", "8", "--json"],
                              env=env)
    assert made.exit_code == 0, made.output
    summary = json.loads(made.output)
    assert summary["generator"] == summary["substitute"] == "v1" and summary["generated"] == 8
    store = LocalStore(tmp_path / "store")
    assert registry.card(store, "v1")["generator"] == registry.bundled_generator()[1]
    assert summary["mean_linf"] > 32 / 255  # the bundled generator's dots: ink past the noise's budget, as edge's
    grey = CliRunner().invoke(main, ["generate", "--pool", "h", "--method", "generator", "--scheme", "lines",
                                     "--count", "8"], env=env)
    assert grey.exit_code == 1 and "trained on colour captchas and lines draws grey ones" in grey.output
    assert "pools/h/manifest.json" not in store.list("pools/")  # refused before anything was written
    from tests.test_folders import make_folder
    make_folder(tmp_path / "grey", count=8)  # a platform's own grey captchas
    source = CliRunner().invoke(main, ["generate", "--pool", "s", "--method", "generator", "--source",
                                       str(tmp_path / "grey"), "--count", "8"], env=env)
    assert source.exit_code == 1 and "trained on colour captchas and the source folder's are grey" in source.output
    assert "pools/s/manifest.json" not in store.list("pools/")


@pytest.mark.slow
def test_the_generator_task_publishes_a_generator_the_farm_then_makes_pools_with_and_a_fine_tune_retrains_it(
        redis_broker, bucket, tmp_path):
    """Real Redis, the Procfile's finetune and generate workers, S3 on moto: the task trains and publishes v2; a
    farm job with --method generator is made with it; a fine-tune on top (v3) queues the generator's retraining
    (v4), and until then v3's pools use v2's generator."""
    from celery import Celery

    from farm.storage.pools import read_keys
    from tests.farm_parts import Worker, finetune_worker, stop, wait_for
    from tests.test_farm import farm_store_env, run_farm
    from tests.test_finetune import SMALL, attacked_farm_store

    env = farm_store_env(redis_broker, bucket)
    store, key = attacked_farm_store(env, tmp_path)
    generate = Worker.start(env, tmp_path)
    try:
        with finetune_worker(env, tmp_path) as log:
            generate.wait_ready()
            app = Celery(broker=redis_broker)
            queue = dict(queue="finetune", routing_key="finetune", exchange="finetune")
            recipe = {"steps": 2, "captchas": 16, "batch_size": 2, "ensemble": [], "dots": 0}
            app.send_task("train_generator", kwargs={"config": recipe}, **queue)

            def child(parent, with_generator):  # the version published on top of `parent`, with or without one
                cards = {v: registry.card(store, v) for v in registry.versions(store)}
                return next((v for v, c in cards.items() if c.get("parent") == parent
                             and ("generator" in c) == with_generator), None)

            v2 = wait_for(lambda: child("v1", with_generator=True), 300, "the generator's version", interval=1)
            assert registry.current(store)["version"] == v2 and registry.card(store, v2)["generation"] == 1
            run_farm(env, "generate", "--pool", "made", "--method", "generator", "--count", "8", "--shard-size", "4",
                     "--no-progress", cwd=tmp_path)
            records = read_keys(store, "made")
            assert {r["substitute"] for r in records} == {v2} and {r["method"] for r in records} == {"generator"}
            assert all(0 < r["linf"] for r in records)
            config = {**SMALL, "tolerance": 0.5, "mistakes_only": False}
            app.send_task("finetune", args=[[key], None], kwargs={"config": config}, **queue)
            v3 = wait_for(lambda: child(v2, with_generator=False), 300, "the fine-tune to publish", interval=1)
            assert registry.generator_version(store, v3) == v2  # until its own is trained, v2's generator serves
            v4 = wait_for(lambda: child(v3, with_generator=True), 300, "the generator retrained for the fine-tune's "
                                                                       "version", interval=1)
            assert registry.current(store)["version"] == v4
            assert registry.card(store, v4)["sha256"] == registry.card(store, v3)["sha256"]
            assert registry.card(store, v4)["generator"]["training"]["config"]["steps"] == 2  # the same recipe
            assert "generator trained against" in log.read_text()
    finally:
        stop(generate.process)


def test_a_colour_generators_placer_learns_from_edges_placement_and_its_pools_carry_dots(tmp_path):
    from farm.core.seeds import Seeds
    from farm.core.spec import PoolSpec
    from farm.ops.generator_training import train_for_store
    from farm.ops.shard import attack_solvers, perturb, render_shard

    store = LocalStore(tmp_path / "store")
    config = GeneratorTraining(captchas=16, steps=2, batch_size=2, ensemble=(), placer_steps=3)
    result = train_for_store(store, config, tmp_path / "work", progress=False)
    placer = registry.card(store, result["version"])["generator"]["training"]["placer"]
    assert placer["dots"] == 8 and placer["captchas"] == 16 and placer["steps"] == 3
    solver = registry.load(store)
    spec = PoolSpec.from_preset("generator", count=4).validate()
    clean = render_shard(spec, 0, Seeds(b"placer test"))
    change = np.abs(perturb(spec, clean, attack_solvers(spec, solver), 0).astype(int) - clean.images)
    assert (change.max(axis=(1, 2, 3)) > 32).all()  # each captcha carries ink past the noise's budget


def test_a_generator_that_places_dots_learns_its_noise_on_the_captchas_it_dotted(substitute, monkeypatch):
    """The placer is trained first; the noise then meets the dotted captchas the method will give it, whose ink
    lies past the noise's budget."""
    from farm.core.spec import PoolSpec
    from farm.ops import generator_training
    from farm.ops.shard import render_shard

    seen = []
    ctc = generator_training._ctc_losses
    monkeypatch.setattr(generator_training, "_ctc_losses", lambda solvers, x, labels: seen.append(x.detach())
                        or ctc(solvers, x, labels))
    config = GeneratorTraining(captchas=1, steps=1, batch_size=2, ensemble=(), placer_captchas=1, placer_steps=2,
                               diversity=0, conversions=0)
    model, summary = train_generator([substitute], config, progress=False)
    assert summary["placer"]["steps"] == 2 and model.config.dots == 8
    spec = PoolSpec.from_preset(config.preset, count=1, shard_size=1, scheme=config.scheme).validate()
    clean = render_shard(spec, 0, generator_training.Seeds(generator_training.TRAINING_SECRET))
    budget = float(generator_training.training_set(spec, clean, 3).budget.max())
    moved = (seen[0] - to_tensor(list(clean.images))).abs().amax((1, 2, 3))  # both codes' images of captcha 0
    assert (moved > budget + 2 / 255).all()  # the dots' ink, which the noise's budget alone cannot reach


def test_a_run_resumed_after_its_placer_keeps_that_placer_and_ends_as_an_uninterrupted_one(substitute, tmp_path,
                                                                                          monkeypatch):
    from farm.ops import generator_training

    config = dict(captchas=6, steps=3, batch_size=2, ensemble=(), placer_captchas=6, placer_steps=2)
    straight, _ = train_generator([substitute], GeneratorTraining(**config), progress=False)
    train_generator([substitute], GeneratorTraining(**config, cpu_minutes=0), progress=False, state=tmp_path / "run")

    def retrained(*args, **kwargs):
        raise AssertionError("the resumed run trained its placer again")

    monkeypatch.setattr(generator_training, "train_placer", retrained)
    resumed, summary = train_generator([substitute], GeneratorTraining(**config), progress=False,
                                       state=tmp_path / "run")
    assert summary["steps"] == 3 and summary["placer"]["steps"] == 2
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


@pytest.mark.parametrize("scheme, family, default", [("classic", "ink", "edge"), ("classic_grey", "noise",
                                                                                  "recommended")])
def test_the_generator_method_is_bound_as_the_default_pools_of_its_scheme_are(scheme, family, default):
    """--method generator alone (farm generate, the API) and its training take the default pools' mask and budgets:
    on colour the ink family's 24/255, not the recommended's 32/255."""
    from farm.core.families import base_preset
    from farm.core.spec import PoolSpec

    served = PoolSpec.from_preset(base_preset(family, None, {"method": "generator"}), scheme=scheme, count=1)
    trained = PoolSpec.from_preset(GeneratorTraining(scheme=scheme).preset, scheme=scheme, count=1)
    reference = PoolSpec.from_preset(default, scheme=scheme, count=1)
    for spec in (served, trained):
        assert spec.method == "generator"
        assert (spec.eps, spec.eps_glyph, spec.mask) == (reference.eps, reference.eps_glyph, reference.mask)
