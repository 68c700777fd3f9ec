"""Model extraction: fine-tuning on a simulated attacker's answers, the guard, bad answers, the queue."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from functools import partial

import pytest
import torch

import farm.core.families
import farm.ops.finetune
from farm.storage import registry
from farm.storage.answers import ingest
from farm.ops.attacker import answer_pool
from farm.exceptions import AnswersError, CheckpointError, FinetuneRefused
from farm.ops.finetune import FinetuneConfig, finetune, load_queries
from farm.ops.submit import generate_pool
from farm.core.spec import PoolSpec
from farm.storage.pools import read_keys
from farm.ops.resemblance import choose_donors, phi
from farm.storage.store import LocalStore
from farm.core.zoo_loading import load_donor
from farm.ops.shard import attack_solvers
from tests.farm_parts import Worker, finetune_worker, stop, wait_for
from tests.test_farm import farm_store_env, redis_broker, redis_port, run_farm  # noqa: F401 (fixtures)

SECRET = b"test-secret-not-for-production"
# small and quick: enough steps for the substitute to learn to read its own adversarial captchas as the bot does
SMALL = dict(steps=60, batch_size=32, eval_every=15, patience=2, replay_count=1000, guard_count=100, workers=0)
# quicker still, for tests of what becomes of a result rather than of what it learned: ~10 s a fine-tune
QUICK = dict(batch_size=32, eval_every=15, patience=2, replay_count=200, guard_count=50, workers=0)


def attacked_store(folder, count: int = 120) -> tuple[LocalStore, str]:
    """A store whose CURRENT (v1, bundled) made a pool, and an answer batch from a bot (the crnn-b donor) on it."""
    store = LocalStore(folder)
    substitute = registry.load(store, registry.ensure_current(store)["version"])
    spec = PoolSpec(count=count, shard_size=count, method="iterative", mask="full", eps=8 / 255, steps=5)
    generate_pool(store, "p", spec, [substitute], SECRET, progress=False)
    answered = answer_pool(store, "p", load_donor("crnn-b"))
    data = "".join(json.dumps(r) + "\n" for r in answered["records"]).encode()
    return store, ingest(store, data).key


def attacked_farm_store(env: dict, folder):
    """attacked_store's objects copied into the farm's store (FARM_STORE of `env`): (store, answer batch key)."""
    from farm.storage.store import open_store

    store = open_store(env["FARM_STORE"])
    local, key = attacked_store(folder / "local", count=64)
    for k in local.list(""):
        store.put(k, local.get(k))
    return store, key


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    return attacked_store(tmp_path_factory.mktemp("attacked") / "store")


@pytest.mark.slow
def test_agreement_with_the_attacker_rises_and_the_new_version_names_its_parent(attacked, tmp_path):
    base, key = attacked
    store = LocalStore(tmp_path / "store")
    for k in base.list(""):  # a copy per test: publishing changes the registry
        store.put(k, base.get(k))
    # every answer learned: the held-out ones, right and wrong, are what agreement counts
    config = FinetuneConfig(**SMALL, tolerance=0.5, mistakes_only=False)
    result = finetune(store, [key], config=config, progress=False)
    assert result["published"] and result["version"] == "v2" and result["base"] == "v1"
    assert result["after"]["agreement"] > result["before"]["agreement"] + 0.1, result
    assert registry.current(store)["version"] == "v2"
    card = registry.card(store, "v2")
    assert card["parent"] == "v1"
    on_mistakes = card["metrics"]["agreement"].pop("on_mistakes")
    assert card["metrics"]["agreement"] == {"before": result["before"]["agreement"],
                                            "after": result["after"]["agreement"],
                                            "holdout": result["queries"]["holdout"]}
    # extraction proper: agreement on the held-out answers the bot got wrong, counted apart
    assert on_mistakes["before"] == result["before"]["agreement_on_mistakes"]
    assert on_mistakes["after"] == result["after"]["agreement_on_mistakes"]
    assert 0 < on_mistakes["holdout"] == result["queries"]["holdout_mistakes"] < result["queries"]["holdout"]
    assert card["metrics"]["accuracy_before"] == result["before"]["clean"]
    assert card["metrics"]["accuracy"] == result["after"]["clean"]
    # the bot is the crnn-b donor: its answers name it first, and every pool of v2 is aimed at it too
    assert card["ensemble"] == result["ensemble"] and result["ensemble"][0] == "crnn-b"
    assert card["metrics"]["resemblance"] == result["resemblance"]


def copy_of(base: LocalStore, folder) -> LocalStore:
    """A copy of a store for one test: publishing changes the registry."""
    store = LocalStore(folder)
    for k in base.list(""):
        store.put(k, base.get(k))
    return store


def damaging_answers(store: LocalStore) -> str:
    """A "bot" that always types 7777 on pool p: learnt with no replay at a high rate, clean reading collapses."""
    lines = [{"pool": "p", "captcha_id": r["id"], "answer": "7777", "risk": "attacker", "time": "2026-11-24T12:00:00Z"}
             for r in read_keys(store, "p")]
    return ingest(store, "".join(json.dumps(r) + "\n" for r in lines).encode()).key


@pytest.mark.slow
def test_the_guard_refuses_a_damaging_fine_tune_and_publishes_nothing(attacked, tmp_path):
    store = copy_of(attacked[0], tmp_path / "store")
    key = damaging_answers(store)
    before = store.list("checkpoints/")
    with pytest.raises(FinetuneRefused, match="nothing was published") as refused:
        # patience for 4 evaluations: the model first collapses to blanks (agreement 0 at steps 15 and 30 with one
        # torch thread) before it types 7777, which two evaluations' patience stopped short of
        finetune(store, [key], config=FinetuneConfig(**{**SMALL, "patience": 4}, replay=0.0, lr=1e-2), progress=False)
    assert store.list("checkpoints/") == before and registry.current(store)["version"] == "v1"
    # the refusal says how close it came: agreement with "7777" rose, clean reading fell under the floor
    assert "under the floor" in str(refused.value) and 0 < refused.value.result["guard_floor"] < 1


@pytest.mark.slow
def test_when_no_weights_agree_better_the_base_publishes_with_the_donor_the_answers_name(attacked, tmp_path,
                                                                                       monkeypatch):
    base, key = attacked  # the bot is the crnn-b donor
    # the family stays whatever the bot reads (a new family alone publishes too: tests/test_families.py)
    monkeypatch.setattr(farm.core.families, "LEARNED", 1.01)
    store = LocalStore(tmp_path / "store")
    for k in base.list(""):
        store.put(k, base.get(k))
    still = FinetuneConfig(**{**SMALL, "steps": 30}, lr=1e-12)  # nothing moves: no step agrees better
    # (in train mode batch-norm statistics would still drift with the batches, whatever the step size)
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: self)
    with pytest.raises(FinetuneRefused, match="no gain.*nothing was published"):  # without donors, as before
        finetune(store, [key], config=replace(still, donors=0), progress=False)
    result = finetune(store, [key], config=still, progress=False)
    assert result["best_step"] == 0 and result["weights"] == "unchanged" and result["published"]
    assert result["ensemble"][0] == "crnn-b" and result["clean_drop"] == {"classic": 0.0}
    v1, v2 = registry.card(store, "v1"), registry.card(store, result["version"])
    assert v2["sha256"] == v1["sha256"] and v2["ensemble"] == result["ensemble"] and v2["parent"] == "v1"
    # the next round: the bot answers a pool of v2, aimed at crnn-b, where crnn-b fails by construction
    spec = PoolSpec(count=60, shard_size=60, method="iterative", mask="full", eps=8 / 255, steps=5)
    generate_pool(store, "p2", spec, attack_solvers(spec, registry.load(store, "v2")), SECRET, progress=False)
    answered = answer_pool(store, "p2", load_donor("crnn-b"))
    key2 = ingest(store, "".join(json.dumps(r) + "\n" for r in answered["records"]).encode()).key
    try:
        got = finetune(store, [key2], config=still, publish=False, progress=False)
    except FinetuneRefused as refused:  # no gain and no new donor
        got = refused.result
    assert got["donors_kept"] == v2["ensemble"] and "crnn-b" not in got["donors_named"]  # kept, not named again
    assert got["ensemble"] == [*v2["ensemble"], *got["donors_named"]]
    assert got["resemblance"]["crnn-b"] is None  # not judged where it was attacked


def test_malformed_foreign_and_human_answers_are_skipped_and_counted(attacked, substitute, tmp_path):
    store, _ = attacked
    ids = [r["id"] for r in read_keys(store, "p")]
    good = {"pool": "p", "risk": "attacker", "time": "2026-11-24T12:00:00Z"}
    records = [{**good, "captcha_id": i, "answer": "AB12"} for i in ids[:12]]
    records += [
        {**good, "captcha_id": ids[0], "answer": "AB12"},  # the same query twice
        {**good, "captcha_id": ids[1], "answer": "ab!2"},  # not in the charset
        {**good, "captcha_id": ids[2], "answer": "ABCDEFGHIJ"},  # too long
        {**good, "captcha_id": ids[3], "answer": "AB12", "risk": "human"},  # a person: not a query to a bot
        {**good, "captcha_id": "0" * 32, "answer": "AB12"},  # no such captcha
        {**good, "captcha_id": "../keys/00000", "answer": "AB12"},  # a path, not an id
        {**good, "pool": "../p", "captcha_id": ids[4], "answer": "AB12"},
        {**good, "captcha_id": ids[5], "answer": 1234},
        ["not", "a", "record"],
    ]
    scratch = LocalStore(tmp_path / "scratch")
    for k in store.list("pools/"):
        scratch.put(k, store.get(k))
    scratch.put("answers/raw.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())
    queries = load_queries(scratch, ["answers/raw.jsonl"], substitute, FinetuneConfig())
    assert queries.skipped == {"duplicate": 1, "invalid": 2, "unreadable_answer": 2, "risk": 1, "missing_image": 1,
                               "malformed": 2}
    assert queries.answers == ["AB12"] * 12 + [None, None] and queries.schemes == ["classic"]
    # the two answers that are no label are never learned, yet count as the bot's failures for resemblance
    assert len(queries.split(held=False)[1]) + len(queries.split(held=True)[1]) == 12
    truths = {r["id"]: r["answer"] for r in read_keys(store, "p")}
    _, texts, solved, _ = queries.answered()
    assert texts[12:] == [truths[ids[1]], truths[ids[2]]] and solved[12:] == [False, False] and len(texts) == 14
    assert 0 < int(queries.holdout.sum()) < 12
    assert scratch.list("pools/") == store.list("pools/")  # reading answers changes nothing stored
    scratch.put("answers/few.jsonl", "".join(json.dumps(r) + "\n" for r in records[:3]).encode())
    with pytest.raises(AnswersError, match="only 3 usable records"):
        load_queries(scratch, ["answers/few.jsonl"], substitute, FinetuneConfig())


def test_the_attackers_right_answers_are_told_apart_by_the_keys_and_left_out_of_training(attacked, substitute):
    from farm.storage.answers import read_batch

    store, key = attacked
    queries = load_queries(store, [key], substitute, FinetuneConfig())
    truths = {r["id"]: r["answer"] for r in read_keys(store, "p")}
    right = sum(r["answer"] == truths[r["captcha_id"]] for r in read_batch(store, key))
    assert 0 < int(queries.solved.sum()) == right < len(queries.answers)
    everything, mistakes = queries.split(held=False)[1], queries.split(held=False, mistakes_only=True)[1]
    assert len(everything) - len(mistakes) == int((queries.solved & ~queries.holdout).sum()) > 0
    held_mistakes = queries.split(held=True, mistakes_only=True)[1]
    # a mistake of the wrong length or alphabet is no label: never a row to learn or measure
    held_wrong = queries.holdout & ~queries.solved & queries.learnable
    assert len(held_mistakes) == int(held_wrong.sum()) < int(queries.holdout.sum())


def test_the_answers_name_the_donor_that_fails_where_the_attacker_failed(attacked, substitute):
    store, key = attacked  # the bot is the crnn-b donor itself
    queries = load_queries(store, [key], substitute, FinetuneConfig())
    chosen, scores = choose_donors(substitute, *queries.answered(), limit=1)
    assert chosen == ["crnn-b"], scores
    assert scores["crnn-b"] > 0.9 and scores["substitute"] < 0.9 and set(scores) == {"substitute", "crnn-b", "resnet-a"}
    assert choose_donors(substitute, *queries.answered(), limit=0) == ([], {})
    # captchas aimed at a donor fail on it by construction: it is judged on the others only, here none
    pictures, truths, solved, _ = queries.answered()
    chosen, scores = choose_donors(substitute, pictures, truths, solved, [frozenset({"crnn-b"})] * len(truths), limit=1)
    assert "crnn-b" not in chosen and scores["crnn-b"] is None and scores["resnet-a"] is not None
    # a donor the base already attacks with is kept, not named again
    assert "crnn-b" not in choose_donors(substitute, *queries.answered(), limit=1, keep=("crnn-b",))[0]
    # a labelled folder has no attacker: it names no donor
    assert choose_donors(substitute, [], [], [], [], limit=1) == ([], {})


def test_resemblance_is_the_correlation_of_solved_flags():
    assert phi([True, False, True, False], [True, False, True, False]) == pytest.approx(1.0)
    assert phi([True, False, True, False], [False, True, False, True]) == pytest.approx(-1.0)
    assert phi([True, True, False, False], [True, False, True, False]) == pytest.approx(0.0)
    assert phi([True, True, True], [True, False, True]) is None  # a solver that reads everything tells nothing


def test_fine_tune_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="unknown field.*stepz"):
        FinetuneConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="replay"):
        FinetuneConfig(replay=1.0).validate()
    with pytest.raises(ValueError, match="donors"):
        FinetuneConfig(donors=-1).validate()


# --- the fine-tune queue with real parts ---------------------------------------------------------------

@pytest.mark.slow
def test_the_finetune_task_publishes_a_version_that_a_running_generation_worker_then_uses(
        redis_broker, bucket, tmp_path):
    from celery import Celery

    env = farm_store_env(redis_broker, bucket)
    store, key = attacked_farm_store(env, tmp_path)
    generate = Worker.start(env, tmp_path)
    try:
        with finetune_worker(env, tmp_path) as log:
            generate.wait_ready()
            app = Celery(broker=redis_broker)
            config = {**SMALL, "tolerance": 0.5, "mistakes_only": False}
            app.send_task("finetune", args=[[key], "v1"], kwargs={"config": config},
                          queue="finetune", routing_key="finetune", exchange="finetune")
            wait_for(lambda: registry.current(store)["version"] == "v2", 300, "the fine-tune to publish v2",
                     interval=1)
            assert "fine-tune published v2 on top of v1" in log.read_text()
            run_farm(env, "generate", "--pool", "after", "--count", "8", "--shard-size", "4", "--steps", "1",
                     "--no-progress", cwd=tmp_path)
            assert {r["substitute"] for r in read_keys(store, "after")} == {"v2"}
            assert "serving substitute v2" in generate.text()
    finally:
        stop(generate.process)


def test_a_bot_answers_a_pool_as_a_platform_reports_it(attacked, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from farm.storage.answers import FIELDS, ingest_file
    from farm.cli import main
    from farm.core.zoo import zoo_path

    store, _ = attacked
    monkeypatch.setenv("FARM_STORE", store.url)
    out = tmp_path / "answers.jsonl"
    result = CliRunner().invoke(main, ["attacker", "answer", "--attacker", str(zoo_path() / "crnn-b"), "--pool", "p",
                                       "--count", "50", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["count"] == len(lines) == 50 and 0 < summary["accuracy"] < 1
    assert all(set(r) == set(FIELDS) and r["risk"] == "attacker" for r in lines)
    truths = {r["id"]: r["answer"] for r in read_keys(store, "p")}
    right = sum(r["answer"] == truths[r["captcha_id"]] for r in lines)
    assert right == round(summary["accuracy"] * 50)  # the bot's own readings, not the truth
    report = ingest_file(store, out)  # what a platform sends: accepted, but for readings outside the charset
    assert report.accepted + len(report.rejected) == 50 and all("answer" in r.reason for r in report.rejected)
    missing = CliRunner().invoke(main, ["attacker", "answer", "--attacker", str(tmp_path), "--pool", "p",
                                        "--out", str(out)])
    assert missing.exit_code != 0 and "model.safetensors is missing" in missing.output


def test_a_bots_solved_flags_follow_the_pools_captchas_in_order(attacked):
    store, _ = attacked
    answered = answer_pool(store, "p", load_donor("crnn-b"), 40)
    truths = [r["answer"] for r in read_keys(store, "p")[:40]]
    assert answered["solved"] == [r["answer"] == t for r, t in zip(answered["records"], truths)]
    assert 0 < sum(answered["solved"]) < 40 and answered["accuracy"] == sum(answered["solved"]) / 40


@pytest.mark.slow
def test_farm_finetune_tells_what_it_learned_and_which_donor_joins_the_next_pools(attacked, monkeypatch):
    from click.testing import CliRunner

    from farm.cli import main

    store, key = attacked  # the bot is the crnn-b donor
    monkeypatch.setenv("FARM_STORE", store.url)
    result = CliRunner().invoke(main, ["finetune", "--answers", key, "--steps", "60", "--all-answers", "--lr", "3e-4",
                                       "--tolerance", "0.5", "--dry-run"])
    assert result.exit_code == 0, result.output
    counts, agreement_line, donors, family, published = result.output.strip().splitlines()[-5:]  # after the bar
    assert re.search(r"(^|\]) *\d+ answers trained on, \d+ held out, skipped (none|\{.*\})$", counts), counts
    assert re.fullmatch(r"agreement with the attacker [\d.]+% -> [\d.]+% \(on its \d+ held-out mistakes [\d.]+% -> "
                        r"[\d.]+%\); clean classic [\d.]+% -> [\d.]+%", agreement_line), agreement_line
    assert re.fullmatch(r"pools of the new version would also be aimed at crnn-b(: it fails|, resnet-a: they fail) where "
                        r"the attacker failed \(resemblance 1\.00(, 0\.\d\d)?, the substitute's 0\.\d\d\)", donors), donors
    # the farm's move: v1 names no family, and on colour classic that is ink (farm.core.families.DEFAULT_FAMILIES);
    # the bot answered only this pool's noise, so nothing says it learned ink: the family stays
    assert re.fullmatch(r"family stays ink: the bot read noise [\d.]+% \(\d+ answers; learned at 25%\)", family), family
    assert published == "dry run: nothing published" and registry.current(store)["version"] == "v1"


@pytest.mark.slow
def test_farm_finetune_tells_the_operator_why_the_guard_refused(attacked, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from farm.cli import main

    store = copy_of(attacked[0], tmp_path / "store")
    key = damaging_answers(store)
    before = store.list("checkpoints/")
    monkeypatch.setenv("FARM_STORE", store.url)
    result = CliRunner().invoke(main, ["finetune", "--answers", key, "--steps", "40", "--replay", "0", "--lr", "1e-2",
                                       "--donors", "0"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Error: no gain" in result.output and "under the floor" in result.output, result.output
    assert "nothing was published" in result.output and "Traceback" not in result.output
    assert store.list("checkpoints/") == before


@pytest.mark.parametrize("args,message", [
    ([], "give --answers BATCH (attackers' answers), --data DIR (a labelled folder), or both"),
    (["--answers", "nope"], "answers: batch 'nope' is not in"),
    (["--answers", "nope", "--replay", "1"], "replay: must be in [0, 1) (got 1.0)"),
])
def test_farm_finetune_names_what_is_wrong_and_exits_1(args, message, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from farm.cli import main

    monkeypatch.setenv("FARM_STORE", (tmp_path / "store").as_uri())
    result = CliRunner().invoke(main, ["finetune", *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"Error: {message}" in result.output
    assert not (tmp_path / "store").exists()  # a refused fine-tune writes nothing


@pytest.mark.parametrize("batches,base,config,message", [
    (["nope"], None, None, "answer_batches: batch 'nope' is not in"),
    ("all", None, None, "answer_batches: must be a list"),
    ([], "../v1", None, "base_version: '../v1' is not a version in"),
    ([], "v7", None, "base_version: 'v7' is not a version in"),
    ([], 1, None, "base_version: 1 is not a version in"),
    ([], None, {"steps": "many"}, "config: a setting has the wrong type"),
    ([], None, {"stepz": 3}, "config: unknown field"),
])
def test_the_finetune_task_names_a_bad_argument_and_counts_a_failure(batches, base, config, message, attacked,
                                                                     monkeypatch):
    from workers import tasks
    from workers.metrics import METRICS

    store, _ = attacked
    monkeypatch.setenv("FARM_STORE", store.url)
    monkeypatch.setattr(tasks._held, "store", None)  # the task opens FARM_STORE, as in a worker process
    before, stored = _failed_finetunes(METRICS), store.list("")
    with pytest.raises(ValueError) as error:
        tasks.finetune(batches, base, config=config)  # the task's function, run here as a worker runs it
    assert str(error.value).startswith(message), error.value
    assert _failed_finetunes(METRICS) == before + 1 and store.list("") == stored


def _failed_finetunes(metrics) -> float:
    return _finetunes(metrics, "failed")


# --- a long fine-tune never throws its result away ------------------------------------------------------

def train_while_another_version_is_published(monkeypatch, store: LocalStore) -> list:
    """While the fine-tune trains, another publisher (its own client, in a thread) makes a new version CURRENT.

    Returns the list of fits run: one entry per training.
    """
    fit, fits = farm.ops.finetune.fit, []

    def fit_racing_a_publisher(*args, **kwargs):
        other = threading.Thread(target=registry.publish, args=(LocalStore(store.root), *registry.bundled()))
        other.start()
        try:
            return fit(*args, **kwargs)
        finally:
            other.join()
            fits.append(registry.current(store)["version"])

    monkeypatch.setattr(farm.ops.finetune, "fit", fit_racing_a_publisher)
    return fits


def count_fits(monkeypatch) -> list:
    """Every training run of farm.ops.finetune, counted (it still trains)."""
    fit, fits = farm.ops.finetune.fit, []
    monkeypatch.setattr(farm.ops.finetune, "fit", lambda *args, **kwargs: fits.append(1) or fit(*args, **kwargs))
    return fits


def farm_cli(*args):
    from click.testing import CliRunner

    from farm.cli import main

    return CliRunner().invoke(main, list(args))


def quick_cli_fine_tunes(monkeypatch, store: LocalStore) -> None:
    """`farm finetune` with the QUICK sizes the CLI has no flags for, on `store`."""
    monkeypatch.setattr(farm.ops.finetune, "FinetuneConfig", partial(FinetuneConfig, **QUICK))
    monkeypatch.setenv("FARM_STORE", store.url)


def test_a_fine_tune_that_loses_the_race_for_current_keeps_its_result_unpromoted(attacked, tmp_path, monkeypatch):
    store = copy_of(attacked[0], tmp_path / "store")
    quick_cli_fine_tunes(monkeypatch, store)
    fits = train_while_another_version_is_published(monkeypatch, store)
    result = farm_cli("finetune", "--answers", attacked[1], "--steps", "15", "--all-answers", "--tolerance", "0.5")
    assert result.exit_code == 0, result.output
    assert fits == ["v2"]  # the other version became CURRENT while this one trained
    assert result.output.strip().splitlines()[-1] == (
        "kept v3 unpromoted (parent v1): CURRENT moved from v1 to v2 during the fine-tune; promote it with "
        "`farm checkpoint promote v3`, or fine-tune again on top of CURRENT")
    assert registry.current(store)["version"] == "v2"
    card = registry.card(store, "v3")  # the whole card: parent, metrics, how it was trained
    assert card["parent"] == "v1" and card["held_back"] == "CURRENT moved from v1 to v2 during the fine-tune"
    assert card["metrics"]["agreement"]["after"] > 0 and card["training"]["finetune"]["best_step"] == 15
    assert registry.load(store, "v3").sha256 == card["sha256"]
    # a generation after v1's, hardened on the bot's answers to pool p (once in the card, not in training too)
    assert card["generation"] == 2 and card["hardened_on"] == {"answers": [attacked[1]], "data": None, "pools": ["p"]}
    assert "answers" not in card["training"]["finetune"] and "data" not in card["training"]["finetune"]

    rows = {r["version"]: r for r in json.loads(farm_cli("checkpoint", "list", "--json").output)}
    assert {v: (r["current"], r["status"], r["generation"], r["lineage"]) for v, r in rows.items()} == {
        "v1": (False, None, 1, []), "v2": (True, None, 2, ["v1"]), "v3": (False, "unpromoted", 2, ["v1"])}
    assert rows["v3"]["held_back"] == card["held_back"] and rows["v3"]["refused"] is None
    listed = farm_cli("checkpoint", "list").output.splitlines()
    assert re.match(r"  v3     gen 2   unpromoted [0-9a-f]{12} .* <- v1$", listed[2])
    assert re.match(r"\* v2     gen 2 {14}[0-9a-f]{12} .* <- v1$", listed[1])
    assert "`farm checkpoint promote VERSION` promotes it" in listed[-1]

    assert farm_cli("checkpoint", "promote", "v3").output == "CURRENT is v3\n"
    rows = json.loads(farm_cli("checkpoint", "list", "--json").output)
    assert [(r["version"], r["current"], r["status"]) for r in rows] == [
        ("v1", False, None), ("v2", False, None), ("v3", True, None)]


def test_a_base_that_is_not_current_is_refused_before_any_training_step(attacked, tmp_path, monkeypatch):
    store = copy_of(attacked[0], tmp_path / "store")
    registry.publish(store, *registry.bundled())  # v2: CURRENT, so v1 no longer is
    quick_cli_fine_tunes(monkeypatch, store)
    fits, stored = count_fits(monkeypatch), store.list("")
    args = ["finetune", "--answers", attacked[1], "--base", "v1", "--steps", "15", "--all-answers", "--tolerance",
            "0.5"]
    refused = farm_cli(*args)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert refused.output == (
        "Error: base: v1 is not CURRENT (v2), so its fine-tune could not be promoted; fine-tune v2 (leave out the "
        "base), or pass --no-promote to publish the result unpromoted and `farm checkpoint promote` it later\n")
    assert fits == [] and store.list("") == stored  # no step, no progress bar, nothing written

    kept = farm_cli(*args, "--no-promote")
    assert kept.exit_code == 0 and fits == [1], kept.output
    assert kept.output.strip().splitlines()[-1].startswith(
        "kept v3 unpromoted (parent v1): published unpromoted on request (--no-promote); promote it with")
    assert registry.current(store)["version"] == "v2" and registry.card(store, "v3")["parent"] == "v1"


def test_the_finetune_task_that_loses_the_race_returns_the_kept_version(attacked, tmp_path, monkeypatch):
    from workers import tasks
    from workers.metrics import METRICS

    store = copy_of(attacked[0], tmp_path / "store")
    monkeypatch.setenv("FARM_STORE", store.url)
    monkeypatch.setattr(tasks._held, "store", None)  # the task opens FARM_STORE, as in a worker process
    fits = train_while_another_version_is_published(monkeypatch, store)
    kept_before, config = _finetunes(METRICS, "kept"), {**QUICK, "steps": 15, "tolerance": 0.5, "mistakes_only": False}
    outcome = tasks.finetune([attacked[1]], "v1", config=config)
    assert fits == ["v2"]
    assert {k: outcome[k] for k in ("published", "promoted", "version", "base", "reason")} == {
        "published": True, "promoted": False, "version": "v3", "base": "v1",
        "reason": "CURRENT moved from v1 to v2 during the fine-tune"}
    assert _finetunes(METRICS, "kept") == kept_before + 1
    assert registry.current(store)["version"] == "v2" and registry.card(store, "v3")["parent"] == "v1"
    # the same base again: refused before training, naming CURRENT and the task's way to keep the result
    failed, stored = _finetunes(METRICS, "failed"), store.list("")
    with pytest.raises(ValueError, match=r"^base_version: v1 is not CURRENT \(v2\).*pass promote=false to publish "
                                         r"the result unpromoted"):
        tasks.finetune([attacked[1]], "v1", config=config)
    assert fits == ["v2"] and store.list("") == stored and _finetunes(METRICS, "failed") == failed + 1
    with pytest.raises(ValueError, match=r"^promote: must be true or false \(got 'no'\)"):
        tasks.finetune([attacked[1]], "v1", config=config, promote="no")


@pytest.mark.slow
def test_a_model_the_guard_refuses_is_kept_unpromoted_and_marked_refused(attacked, tmp_path):
    store = copy_of(attacked[0], tmp_path / "store")
    # no drop allowed: the best admissible weights read one of the final check's 50 captchas less (seed 1:
    # which batches, and so which steps, hold up on the guard is the seed's)
    config = FinetuneConfig(**{**QUICK, "eval_every": 5}, steps=15, lr=5e-4, tolerance=0.0, mistakes_only=False,
                            seed=1)
    with pytest.raises(FinetuneRefused) as refused:
        finetune(store, [attacked[1]], config=config, progress=False)
    assert re.match(r"guard: clean accuracy on classic fell from [\d.]+% to [\d.]+% \([\d.]+% > tolerance 0\.0%\); "
                    r"kept as v2, unpromoted and marked refused \(`farm checkpoint show v2`; `farm checkpoint promote "
                    r"--force v2` uses it anyway\)", str(refused.value)), refused.value
    assert refused.value.result["version"] == "v2" and refused.value.result["published"]
    assert not refused.value.result["promoted"] and registry.current(store)["version"] == "v1"
    card = registry.card(store, "v2")
    assert card["refused"] == refused.value.result["reason"] and card["parent"] == "v1"
    assert registry.load(store, "v2").card["metrics"]["accuracy"] == refused.value.result["after"]["clean"]
    with pytest.raises(CheckpointError, match="guard refused it.*--force"):
        registry.promote(store, "v2")


def _finetunes(metrics, result: str) -> float:
    return metrics.registry.get_sample_value("farm_finetune_runs_total", {"result": result}) or 0


@pytest.mark.slow
def test_a_new_family_does_not_wait_for_weights_the_guard_refused(attacked, tmp_path):
    store = copy_of(attacked[0], tmp_path / "store")
    weights, card = registry.bundled()  # the bundled weights, of a noise generation: the bot's pool is noise
    assert registry.publish(store, weights, {**card, "family": {"name": "noise"}}) == "v2"
    # the guard's refusal of the same fine-tune as above (same weights, answers and seed), hardening no copy
    config = FinetuneConfig(**{**QUICK, "eval_every": 5}, steps=15, lr=5e-4, tolerance=0.0, mistakes_only=False,
                            seed=1, anticipate=0)
    result = finetune(store, [attacked[1]], config=config, progress=False)
    assert result["family"]["from"] == "noise" and result["family"]["name"] == "geometry", result["family"]
    # the trained weights are kept, refused; the move is published with the base's weights and is CURRENT
    refused = result["weights_refused"]
    assert refused["version"] == "v3" and refused["reason"].startswith("guard: clean accuracy on classic fell")
    assert registry.card(store, "v3")["refused"] == refused["reason"]
    assert result["version"] == "v4" and result["promoted"] and result["weights"] == "unchanged"
    moved = registry.card(store, "v4")
    assert moved["sha256"] == registry.card(store, "v2")["sha256"] and moved["family"]["name"] == "geometry"
    assert moved["parent"] == "v2" and "refused" not in moved and registry.current(store)["version"] == "v4"
    assert moved["metrics"]["accuracy"] == result["after"]["clean"] == result["before"]["clean"]
