"""A platform's own captchas: labelled folders for training and fine-tuning, and pools perturbing them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from farm.core.charset import Charset, parse_alphabet
from farm.exceptions import DataError, PoolError
from farm.storage.folder import estimate_glyphs, read_folder
from farm.ops.submit import generate_pool
from farm.core.spec import FOLDER, PoolSpec
from farm.storage.layout import image_key
from farm.storage.pools import pool_images, read_keys
from farm.storage.manifest import read_manifest
from farm.core.schemes import captcha_seed, get_scheme
from tests.conftest import farm_env

SECRET = b"test-secret-not-for-production"  # FARM_SECRET of every test (conftest)
DIGITS = Charset("0123456789", 1, 64)


def make_folder(folder: Path, count: int = 12, labels: str = "names", scheme: str = "lines", digits: bool = True,
                start: int = 0) -> list[tuple[str, np.ndarray]]:
    """`count` captchas of a scheme (digit answers of 4-6 characters when `digits`); answers as `labels` says."""
    folder.mkdir(parents=True, exist_ok=True)
    renderer, rows = get_scheme(scheme), []
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        text = "".join(rng.choice(list("0123456789"), int(rng.integers(4, 7)))) if digits \
            else renderer.sample(captcha_seed(9, i)).text
        image = renderer.render(text, captcha_seed(9, i)).image
        name = f"{text}_{i:04d}.png" if labels == "names" else f"c{i:04d}.png"
        Image.fromarray(image).save(folder / name)
        rows.append((name, text, image))
    if labels == "jsonl":
        (folder / "labels.jsonl").write_text("".join(json.dumps({"file": n, "answer": t}) + "\n" for n, t, _ in rows))
    elif labels == "csv":
        (folder / "labels.csv").write_text("file,answer\n" + "".join(f"{n},{t}\n" for n, t, _ in rows))
    return [(t, im) for _, t, im in rows]


@pytest.mark.parametrize("labels", ["names", "jsonl", "csv"])
def test_answers_come_from_labels_jsonl_csv_or_the_file_names(tmp_path, labels):
    made = make_folder(tmp_path / "f", labels=labels)
    data = read_folder(tmp_path / "f", DIGITS)
    assert sorted(data.texts) == sorted(t for t, _ in made)
    by_text = {t: im for t, im in made}
    assert all((by_text[t] == im).all() for t, im in zip(data.texts, data.images))
    assert data.images.dtype == np.uint8 and data.glyphs.dtype == bool and data.glyphs.shape == data.images.shape
    assert data.glyphs.any() and not read_folder(tmp_path / "f", DIGITS, glyphs=False).glyphs.any()  # training skips them


def test_answers_in_one_case_read_case_blind(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i, text in enumerate(["ab3d", "xk9z"]):
        Image.fromarray(get_scheme("classic").render(text.upper(), i).image).save(folder / f"{text}_{i}.png")
    assert sorted(read_folder(folder, Charset()).texts) == ["AB3D", "XK9Z"]


def _broken(folder: Path, kind: str) -> None:
    if kind == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no captchas here")
        return
    make_folder(folder, count=4, labels="jsonl" if kind in ("unlabelled", "missing", "bad line") else "names")
    if kind == "unreadable":
        (folder / "1234_9999.png").write_bytes(b"not a png")
    elif kind == "outside alphabet":
        Image.new("L", (192, 64), 200).save(folder / "12a4_9999.png")
    elif kind == "unlabelled":
        Image.new("L", (192, 64), 200).save(folder / "extra.png")
    elif kind == "missing":
        with (folder / "labels.jsonl").open("a") as f:
            f.write(json.dumps({"file": "gone.png", "answer": "1234"}) + "\n")
    elif kind == "too large":  # a few hundred bytes of PNG that would decode to 64 MB
        Image.new("L", (8000, 8000), 200).save(folder / "1234_9999.png")
    elif kind == "bad line":
        with (folder / "labels.jsonl").open("a") as f:
            f.write("{\"file\": \"x.png\"\n")


@pytest.mark.parametrize("kind, message", [
    ("empty", "holds no images"),
    ("unreadable", "cannot be read: 1234_9999.png (UnidentifiedImageError)"),
    ("outside alphabet", "12a4_9999.png: character 'a' at position 2"),
    ("unlabelled", "without an answer: extra.png"),
    ("missing", "not images in"),
    ("too large", "1234_9999.png (8000x8000"),
    ("bad line", "line 5"),
])
def test_a_bad_folder_is_refused_naming_the_files(tmp_path, kind, message):
    _broken(tmp_path / "f", kind)
    with pytest.raises(DataError, match="data: ") as error:
        read_folder(tmp_path / "f", DIGITS)
    assert message in str(error.value)


def test_a_given_glyph_mask_is_used_and_one_of_another_size_is_refused(tmp_path):
    text, image = make_folder(tmp_path / "f", count=3)[0]
    stem = f"{text}_0000"
    name = f"{stem}.png"
    drawn = np.zeros(image.shape, dtype=np.uint8)
    drawn[10:20, 30:60] = 255
    Image.fromarray(drawn).save(tmp_path / "f" / f"{stem}.mask.png")
    data = read_folder(tmp_path / "f", DIGITS)
    assert (data.glyphs[data.files.index(name)] == (drawn > 127)).all()
    assert "glyph masks: 1 given, 2 estimated" in data.notes
    Image.new("L", (8000, 8000), 255).save(tmp_path / "f" / f"{stem}.mask.png")
    with pytest.raises(DataError, match=f"glyph mask {stem}.mask.png is 8000x8000 but its image is "
                                        f"{image.shape[1]}x{image.shape[0]}"):
        read_folder(tmp_path / "f", DIGITS)


def test_mixed_sizes_are_resized_to_the_most_common_with_a_note(tmp_path):
    make_folder(tmp_path / "f", count=5)
    Image.fromarray(get_scheme("lines").render("5555", 1).image).resize((150, 50)).save(tmp_path / "f" / "5555_x.png")
    data = read_folder(tmp_path / "f", DIGITS)
    height, width = get_scheme("lines").height, get_scheme("lines").width
    assert data.images.shape[1:] == (height, width)
    assert any(f"resized 1 of 6 images to the most common size {width}x{height}" in note for note in data.notes)


def test_an_estimated_glyph_mask_covers_the_glyphs_and_little_else():
    scheme = get_scheme("classic")
    recall, share = [], []
    for i in range(20):
        captcha = scheme.sample(i)
        estimate = estimate_glyphs(captcha.image)
        recall.append((estimate & captcha.mask).sum() / captcha.mask.sum())
        share.append(estimate.mean())
    assert np.mean(recall) > 0.95 and np.mean(share) < 0.5


def test_named_and_literal_alphabets():
    assert parse_alphabet("digits") == "0123456789"
    assert parse_alphabet("xyz") == "xyz"
    with pytest.raises(ValueError, match="repeats 'x'"):
        parse_alphabet("xyx")
    assert Charset("0123456789ABC").covers("0123abc") == ""  # one case: case-blind
    assert Charset("0123456789").covers("09ab") == "ab"
    assert Charset().encode("ab3d") == Charset().encode("AB3D")  # a one-case alphabet encodes either case


def farm(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["farm", *args], capture_output=True, text=True, env=farm_env(tmp_path, **env),
                          cwd=tmp_path, timeout=600)


def test_generate_source_perturbs_the_folders_captchas_in_the_pool_layout(tmp_path):
    made = make_folder(tmp_path / "mine", count=10, labels="csv", scheme="classic", digits=False)
    run = farm(tmp_path, "generate", "--pool", "own", "--source", "mine", "--steps", "3", "--shard-size", "4",
               "--json", "--no-progress")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["count"] == 10 and summary["substitute_accuracy_clean"] >= 0.8
    assert "glyph masks: 0 given, 10 estimated" in run.stderr
    from farm.storage.store import LocalStore
    store = LocalStore(tmp_path / "store")
    manifest = read_manifest(store, "own")
    assert manifest["spec"]["scheme"] == FOLDER and manifest["charset"]["alphabet"] == Charset().alphabet
    records, clean, adversarial = pool_images(store, "own")
    truth = dict(made)
    assert [truth[r["answer"]].tobytes() for r in records] == [c.tobytes() for c in clean]  # the folder's own
    assert (clean != adversarial).any()
    public = store.list("pools/own/images/") + [k for k in store.list("sources/") if k.endswith(".npz")]
    assert len(public) == 10 + 1  # 10 images, 1 chunk of the source (answers only in its labels.jsonl)
    assert not any(text in key for text in truth for key in public), "an answer in an object name"
    assert all(store.exists(image_key("own", r["id"])) for r in records)
    again = farm(tmp_path, "generate", "--pool", "own", "--source", "mine", "--steps", "3", "--shard-size", "4",
                 "--json", "--no-progress")
    assert json.loads(again.stdout)["generated"] == 0  # the same folder: the same source, nothing to redo


def test_generate_source_refuses_answers_its_substitute_cannot_read_and_writes_nothing(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.new("L", (160, 60), 230).save(folder / "ab#d_1.png")
    run = farm(tmp_path, "generate", "--pool", "own", "--source", "mine")
    assert run.returncode != 0 and "character '#' at position 2" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "store" / "pools" / "own").exists()


def test_a_source_pool_is_written_through_s3_and_read_back(s3_store, substitute, tmp_path):
    from farm.storage.folder import import_source

    make_folder(tmp_path / "mine", count=6, scheme="classic", digits=False)
    data = read_folder(tmp_path / "mine", substitute.charset)
    spec = PoolSpec(count=6, scheme=FOLDER, source=import_source(s3_store, data), method="iterative", steps=2,
                    mask="background", shard_size=4)
    summary = generate_pool(s3_store, "own", spec, [substitute], SECRET, progress=False, processes=1)
    assert summary["count"] == 6
    assert sorted(r["answer"] for r in read_keys(s3_store, "own")) == sorted(data.texts)
    records, clean, adversarial = pool_images(s3_store, "own")
    glyphs = {t: g for t, g in zip(data.texts, data.glyphs)}
    for record, c, a in zip(records, clean, adversarial):
        assert (c[glyphs[record["answer"]]] == a[glyphs[record["answer"]]]).all()  # background mask kept glyphs


def test_a_substitute_that_cannot_read_a_schemes_alphabet_is_refused(store, tmp_path):
    from farm.core.checkpoint import build_model, load_solver_dir, save_solver_dir

    model = build_model("crnn", {}, num_classes=11)
    save_solver_dir(model, Charset("0123456789", 1, 8), tmp_path / "digits", version="digits")
    solver = load_solver_dir(tmp_path / "digits")
    with pytest.raises(PoolError, match="cannot read"):
        generate_pool(store, "p", PoolSpec(count=4, scheme="classic"), [solver], b"k" * 32, progress=False)
    assert not store.list("pools/")


def test_batches_take_the_data_weight_share_from_the_folder():
    from farm.ops.train import TrainConfig, _batch_indices

    config = TrainConfig(batch_size=16, data="x", data_weight=0.25, samples=100)
    index = _batch_indices(3, config, 100, 50)
    assert len(index) == 16 and sum(i >= 100 for i in index) == 4 and all(i < 150 for i in index)
    alone = TrainConfig(batch_size=16, data="x", data_weight=1.0)
    assert sorted(_batch_indices(0, alone, 0, 50)) == sorted(set(_batch_indices(0, alone, 0, 50)))
    assert len(_batch_indices(0, alone, 0, 50)) == 16 and all(i < 50 for i in _batch_indices(0, alone, 0, 50))


def test_a_mix_of_one_case_schemes_makes_a_case_blind_charset():
    from farm.core.schemes import Scheme, register
    from farm.ops.train import mix_charset

    class Lower(Scheme):
        name, width, height, alphabet, lengths = "lowertest", 40, 20, "abc", (3, 3)

        def draw(self, text, rng):
            return np.zeros((20, 40), np.uint8), np.zeros((20, 40), bool)

    register(Lower)
    charset = mix_charset({"classic": 1.0, "lowertest": 1.0})
    assert not charset.case_sensitive and "a" not in charset.alphabet and "A" in charset.alphabet


@pytest.mark.slow
def test_a_digits_alphabet_through_train_generate_verify_answers_and_finetune(tmp_path):
    """A substitute for another alphabet, trained on a folder alone, then every path that reads answers."""
    make_folder(tmp_path / "train", count=64, labels="jsonl")
    make_folder(tmp_path / "heldout", count=8, start=1000)
    out = tmp_path / "digits-sub"
    run = farm(tmp_path, "train", "--out", str(out), "--data", "train", "--data-weight", "1", "--alphabet", "digits",
               "--steps", "30", "--batch-size", "16", "--eval-every", "15", "--workers", "0", "--json")
    assert run.returncode == 0, run.stderr
    card = json.loads(run.stdout)
    assert card["charset"] == {"alphabet": "0123456789", "min_length": 4, "max_length": 6}
    assert card["data"]["images"] == 64 and card["data"]["weight"] == 1.0 and "data" in card["metrics"]["accuracy"]
    assert card["schemes"] == {}

    run = farm(tmp_path, "generate", "--pool", "digits", "--source", "heldout", "--checkpoint", str(out),
               "--steps", "2", "--json", "--no-progress")
    assert run.returncode == 0, run.stderr
    from farm.ops.client import PoolClient
    from farm.storage.store import LocalStore
    store = LocalStore(tmp_path / "store")
    assert read_manifest(store, "digits")["charset"]["alphabet"] == "0123456789"
    record = read_keys(store, "digits")[0]
    client = PoolClient(store)
    assert client.verify("digits", record["id"], record["answer"])
    assert not client.verify("digits", record["id"], record["answer"][:-1] + "x")

    answers = tmp_path / "answers.jsonl"
    line = {"pool": "digits", "captcha_id": record["id"], "risk": "attacker", "time": "2026-11-24T17:00:00Z"}
    answers.write_text(json.dumps({**line, "answer": "12a4"}) + "\n" + json.dumps({**line, "answer": "1234"}) + "\n")
    report = json.loads(farm(tmp_path, "answers", "ingest", str(answers), "--json").stdout)
    # the pool's alphabet is digits: "12a4" is kept as the bot's failure, noted, never learned
    assert report["accepted"] == 2 and not report["rejected"] and "'a'" in report["unreadable"][0]["reason"]

    run = farm(tmp_path, "checkpoint", "publish", str(out))
    assert run.returncode == 0, run.stderr
    letters = tmp_path / "letters"
    make_folder(letters, count=4, scheme="classic", digits=False)
    run = farm(tmp_path, "finetune", "--data", "letters", "--steps", "2", "--dry-run")
    assert run.returncode != 0 and "outside the alphabet '0123456789'" in run.stderr
    run = farm(tmp_path, "finetune", "--data", "train", "--steps", "4", "--dry-run", "--json")
    result = json.loads(run.stdout)
    assert result["queries"]["train"] + result["queries"]["holdout"] == 64 and result["target_schemes"] == []


def test_a_sources_mode_is_recorded_and_read_from_its_captchas_when_an_older_import_did_not_say(tmp_path):
    from farm.storage.folder import import_source, source_mode
    from farm.storage.store import LocalStore

    store = LocalStore(tmp_path / "store")
    make_folder(tmp_path / "grey", count=4)
    make_folder(tmp_path / "colour", count=4, scheme="classic", digits=False)
    grey = import_source(store, read_folder(tmp_path / "grey", DIGITS))
    colour = import_source(store, read_folder(tmp_path / "colour", get_scheme("classic").charset))
    assert (source_mode(store, grey), source_mode(store, colour)) == ("L", "RGB")
    for source in (grey, colour):  # as imported before the description held the mode
        key = f"sources/{source}/source.json"
        store.put(key, json.dumps({k: v for k, v in json.loads(store.get(key)).items() if k != "mode"}).encode())
    assert (source_mode(store, grey), source_mode(store, colour)) == ("L", "RGB")
