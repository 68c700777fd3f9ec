"""The CRNN: shapes, CTC decoding, learning, and checkpoints that refuse to load when wrong."""

import json

import pytest
import torch

from farm.core.charset import Charset
from farm.core.checkpoint import load_solver_dir, save_solver_dir
from farm.exceptions import CheckpointError
from farm.core.model import CRNN, CRNNConfig, greedy_decode


def test_any_input_size_gives_one_column_distribution_per_time_step():
    model = CRNN(CRNNConfig()).eval()
    for h, w in ((60, 160), (64, 192), (32, 96)):
        out = model(torch.rand(3, 1, h, w))
        assert out.shape == (24, 3, 37)
        assert torch.allclose(out.exp().sum(-1), torch.ones(24, 3), atol=1e-4)


def test_greedy_decoding_collapses_repeats_and_drops_blanks():
    charset = Charset()
    path = [1, 1, 0, 1, 2, 2, 0, 0, 11]  # "0" "0"(after blank) "1" "A"
    log_probs = torch.full((len(path), 1, 37), -10.0)
    for t, c in enumerate(path):
        log_probs[t, 0, c] = 0.0
    assert greedy_decode(log_probs, charset) == ["001A"]


@pytest.mark.slow
def test_a_small_training_run_really_learns(tmp_path):
    from farm.ops.train import TrainConfig, train
    config = TrainConfig(mix={"lines": 1.0}, samples=512, steps=250, batch_size=32, warmup=30, eval_every=250,
                         val_count=50, workers=0)
    card = train(config, tmp_path / "ck", progress=False, final_count=20)
    assert card["training"]["loss_end"] < 0.6 * card["training"]["loss_start"]
    assert (tmp_path / "ck" / "model.safetensors").exists()


def test_checkpoint_round_trip_reads_identically(tmp_path, substitute):
    save_solver_dir(substitute.model, substitute.charset, tmp_path / "ck", version="copy")
    again = load_solver_dir(tmp_path / "ck")
    x = torch.rand(4, 1, 60, 160)
    assert torch.equal(substitute.model(x), again.model(x))


@pytest.fixture
def checkpoint(tmp_path, substitute):
    save_solver_dir(substitute.model, substitute.charset, tmp_path / "ck", version="copy")
    return tmp_path / "ck"


def test_truncated_weights_are_refused(checkpoint):
    weights = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="sha256"):
        load_solver_dir(checkpoint)


def test_truncated_weights_with_a_matching_card_are_refused_as_unreadable(checkpoint):
    from farm.core.checkpoint import sha256_hex
    weights = (checkpoint / "model.safetensors").read_bytes()[:1000]
    (checkpoint / "model.safetensors").write_bytes(weights)
    card = json.loads((checkpoint / "card.json").read_text())
    card["sha256"] = sha256_hex(weights)
    (checkpoint / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_solver_dir(checkpoint)


def test_a_card_whose_sha256_does_not_match_is_refused(checkpoint):
    card = json.loads((checkpoint / "card.json").read_text())
    card["sha256"] = "0" * 64
    (checkpoint / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not match"):
        load_solver_dir(checkpoint)


def test_a_card_for_another_charset_is_refused(checkpoint):
    with pytest.raises(CheckpointError, match="charset"):
        load_solver_dir(checkpoint, expect_charset=Charset("abcdefghijklmnopqrstuvwxyz0123456789"))


def test_a_foreign_file_is_refused(tmp_path):
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x80\x04pickle")
    (folder / "card.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a captchafarm card"):
        load_solver_dir(folder)


def test_missing_card_says_what_a_checkpoint_holds(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="card.json|model.safetensors"):
        load_solver_dir(tmp_path / "empty")


def test_resuming_a_run_with_other_settings_is_refused(tmp_path):
    from farm.ops.train import TrainConfig, train
    config = TrainConfig(mix={"lines": 1.0}, samples=64, steps=2, batch_size=8, warmup=1, eval_every=1,
                         val_count=4, workers=0)
    train(config, tmp_path / "ck", progress=False, final_count=4)
    with pytest.raises(ValueError, match="differs in steps, lr"):
        train(TrainConfig(**{**config.__dict__, "steps": 3, "lr": 1e-3}), tmp_path / "ck", progress=False)
    again = train(TrainConfig(**{**config.__dict__, "workers": 1}), tmp_path / "ck", progress=False, final_count=4)
    assert again["training"]["config"]["steps"] == 2  # the same recipe resumes (here: nothing left to do)
