"""Training a CRNN on a mix of freshly rendered captcha schemes: resumable, reproducible from a seed.

The loop reads top to bottom: render (in worker processes) -> CTC loss -> AdamW step with a
warm-up + cosine learning rate -> now and then a validation pass and a resumable state file.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch
from tqdm import tqdm

from farm.core.charset import DEFAULT_ALPHABET, Charset, parse_alphabet
from farm.core.checkpoint import Solver, build_model, save_solver_dir
from farm.core.dataset import TRAIN, VALIDATION, Batch, CaptchaStream, render_set
from farm.storage.folder import Labelled, read_folder
from farm.core.model import to_input_bytes
from farm.core.charset import MAX_ANSWER_CHARS
from farm.ops.evaluate import scheme_accuracy, sequence_accuracy
from farm.ops.resume import check_same_run, load_state, save_state
from farm.core.schemes import get_scheme
from farm.core.zoo import member, zoo_path
from farm.core.preprocess import apply
from farm.exceptions import SettingError

__all__ = ["TrainConfig", "train", "mix_charset", "train_charset", "parse_mix", "FOLDER_METRIC", "train_member"]

log = logging.getLogger(__name__)
FOLDER_METRIC = "data"  # the card's accuracy on the --data folder's held-out captchas


@dataclass
class TrainConfig:
    """What a training run does. Saved in the card so the run can be repeated."""

    # classic, the target, weighs most; the others teach fonts, warps and noise it does not show
    mix: dict[str, float] = field(default_factory=lambda: {"classic": 0.7, "lines": 0.15, "wave": 0.15})
    samples: int = 240_000  # distinct captchas, rendered once; steps * batch_size / samples = passes
    steps: int = 12_000
    batch_size: int = 64  # small batches: more updates per CPU-second, and CTC converges sooner
    lr: float = 2e-3
    warmup: int = 300  # steps; CTC from scratch diverges without a warm-up
    weight_decay: float = 1e-4
    seed: int = 0
    val_count: int = 300  # per scheme, checked every `eval_every` steps
    eval_every: int = 1000
    workers: int = 2  # render processes for the data set
    architecture: str = "crnn"  # see farm.core.checkpoint.build_model; zoo solvers use the others
    model: dict = field(default_factory=dict)  # overrides of the architecture's config
    augment: tuple[str, ...] = ()  # attacker-style input changes: noise, blur, binarize, median3, jpeg50
    threads: int = 0  # torch threads for the trainer; 0 = torch's default
    data: str | None = None  # a labelled folder of the platform's captchas (farm.storage.folder), mixed in
    data_weight: float = 0.5  # share of each batch from `data`; 1: the folder alone (mix unused)
    alphabet: str | None = None  # what the model reads (farm.core.charset.parse_alphabet); default: the mix's

    def validate(self) -> "TrainConfig":
        if self.data is None and not self.mix:
            raise SettingError("mix: name at least one scheme, or train on a folder with --data")
        if self.data is not None and not 0 < self.data_weight <= 1:
            raise SettingError(f"data-weight: must be in (0, 1] (got {self.data_weight})")
        if self.alphabet is not None:
            self.alphabet = parse_alphabet(self.alphabet)
        return self

    @property
    def schemes(self) -> dict[str, float]:
        """The generated part of the data (none when the folder is all of it)."""
        return {} if self.data is not None and self.data_weight >= 1 else self.mix


def parse_mix(text: str) -> dict[str, float]:
    """'classic=0.5,lines=0.25' -> {'classic': 0.5, 'lines': 0.25}; a bare name weighs 1."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError as e:
            raise SettingError(f"mix: weight of {name!r} is not a number: {weight!r}") from e
    for name in mix:
        get_scheme(name)
    if not mix:
        raise SettingError("mix: name at least one scheme, e.g. classic=0.5,lines=0.25,wave=0.25")
    return mix


def mix_charset(mix: dict[str, float]) -> Charset:
    """One charset covering every scheme of the mix (alphabet order of the first scheme first).

    Schemes that each use one case of letters (classic upper, a plugin lower) make a case-blind
    charset in the first one's case: 'a' and 'A' are one answer to all of them, not two classes.
    """
    schemes = [get_scheme(n) for n in mix]
    alphabet = "".join(dict.fromkeys("".join(s.alphabet for s in schemes)))
    if not any(s.charset.case_sensitive for s in schemes):
        fold = str.lower if any(c.islower() for c in schemes[0].alphabet) else str.upper
        alphabet = "".join(dict.fromkeys(fold(alphabet)))
    return Charset(alphabet, min(s.lengths[0] for s in schemes), max(s.lengths[1] for s in schemes))


def train_charset(config: TrainConfig, folder_texts: list[str] = ()) -> Charset:
    """What the model reads: --alphabet (or the mix's alphabet), lengths wide enough for mix and folder."""
    lengths = [len(t) for t in folder_texts]
    for name in config.schemes:
        lengths += get_scheme(name).lengths
    if config.alphabet is None:
        return Charset(mix_charset(config.schemes).alphabet if config.schemes else DEFAULT_ALPHABET,
                       min(lengths, default=1), max(lengths, default=MAX_ANSWER_CHARS))
    charset = Charset(config.alphabet, min(lengths, default=1), max(lengths, default=MAX_ANSWER_CHARS))
    for name in config.schemes:
        missing = charset.covers(get_scheme(name).alphabet)
        if missing:
            raise SettingError(f"alphabet: scheme {name} of the mix draws {missing!r}, outside {config.alphabet!r}; "
                               f"widen --alphabet or leave {name} out of --mix")
    return charset


def _folder(config: TrainConfig, alphabet: str) -> Labelled | None:
    """The --data folder checked against the model's alphabet (any length: the charset widens to fit it)."""
    if config.data is None:
        return None
    return read_folder(config.data, Charset(alphabet, 1, MAX_ANSWER_CHARS), glyphs=False)


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


_RESUME_FREE = ("workers", "threads", "eval_every")  # may change between a run and its resume: same result


def train(config: TrainConfig, out: Path, resume: bool = True,
          progress: bool = True, command: str | None = None, final_count: int = 1000,
          card_fields: dict | None = None) -> dict:
    """Train and write a checkpoint folder (model.safetensors, card.json) to `out`; returns the card."""
    out = Path(out)
    config.validate()
    folder = _folder(config, train_charset(config).alphabet)
    charset = train_charset(config, folder.texts if folder else ())
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_model(config.architecture, config.model, num_classes=charset.num_classes)
    model = model.to(memory_format=torch.channels_last)  # faster conv, BN and pooling on CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state_dir = out / "train-state"
    step, elapsed = 0, 0.0
    if resume and (state_dir / "state.json").exists():
        check_same_run(state_dir, config, _RESUME_FREE)
        step, elapsed = load_state(state_dir, model, optimizer)
        log.info("resuming at step %d", step)
    size = (model.config.input_height, model.config.input_width)
    grey = model.config.grey
    validation = {name: CaptchaStream({name: 1.0}, config.val_count, config.seed, size, VALIDATION, stop=1,
                                      grey=grey).batch(0) for name in config.schemes}
    generated = render_set(config.schemes, config.samples, config.seed, size, TRAIN, config.workers,
                           progress=progress, grey=grey) if config.schemes else None
    images, texts = (generated.images, generated.texts) if generated else (torch.empty(0, 1, *size, dtype=torch.uint8), [])
    if folder is not None:
        held = torch.from_numpy(folder.held_out(0.1, most=1000))
        folder_images = to_input_bytes(folder.images, size, grey)
        rows = (~held).nonzero().squeeze(1).tolist()
        images, texts = torch.cat([images, folder_images[rows]]), texts + [folder.texts[i] for i in rows]
        held_rows = held.nonzero().squeeze(1).tolist()
        folder_val = Batch(folder_images[held_rows].float().div(255), [folder.texts[i] for i in held_rows], [])
        validation[FOLDER_METRIC] = Batch(folder_val.images[:config.val_count], folder_val.texts[:config.val_count], [])
    labels = [charset.encode(t) for t in texts]
    n_generated = len(generated.texts) if generated else 0
    sizes = (n_generated, len(texts) - n_generated)
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    started, seen, val, losses = time.perf_counter(), 0, {}, []
    model.train()
    while step < config.steps:
        index = _batch_indices(step, config, *sizes)
        torch.manual_seed(config.seed * 1_000_003 + step)  # dropout depends on the step only: resumes repeat
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = images[index].float().div_(255)
        if config.augment:
            batch = augment(batch, config.augment, torch.Generator().manual_seed(config.seed * 31 + step))
        batch = batch.contiguous(memory_format=torch.channels_last)
        loss = model.loss(model(batch), [labels[i] for i in index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        seen += len(index)
        losses.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            val = _validate(model, charset, validation)
            model.train()
            save_state(state_dir, model, optimizer, step, config, elapsed + time.perf_counter() - started)
        rate = seen / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{rate:.0f}",
                        **{f"val_{k}": f"{v:.3f}" for k, v in val.items()}, refresh=False)
        bar.update(1)
    bar.close()
    elapsed += time.perf_counter() - started
    model.eval()
    solver = Solver(model, charset, {})
    accuracy = scheme_accuracy(solver, list(config.schemes), final_count, seed=config.seed, workers=config.workers,
                               purpose=VALIDATION + 10) if config.schemes else {}
    card_data = {}
    if folder is not None:
        accuracy[FOLDER_METRIC] = {"accuracy": sequence_accuracy(solver.read(folder_val.images), folder_val.texts)}
        card_data = {"data": {"folder": folder.name, "images": len(folder.texts), "validation": len(folder_val.texts),
                              "weight": config.data_weight, "sha256": folder.digest(), "notes": folder.notes}}
    card = save_solver_dir(
        model, charset, out,
        version=out.name, parent=None,
        schemes={name: {"weight": w, "width": get_scheme(name).width, "height": get_scheme(name).height}
                 for name, w in config.schemes.items()},
        training={"config": asdict(config), "samples_seen": config.steps * config.batch_size,
                  "seconds": round(elapsed, 1), "torch": torch.__version__,
                  "loss_start": round(sum(losses[:20]) / max(1, len(losses[:20])), 4) if losses else None,
                  "loss_end": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4) if losses else None,
                  "command": command or " ".join(shlex.quote(a) for a in sys.argv)},
        metrics={"accuracy": {k: round(v["accuracy"], 4) for k, v in accuracy.items()},
                 "accuracy_count": final_count},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **card_data, **(card_fields or {}))
    return card


def augment(images: torch.Tensor, kinds: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Half of a batch gets one attacker-style change, so the solver reads both kinds."""
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
    half = images[: len(images) // 2]
    if kind == "noise":
        half = (half + 0.06 * torch.randn(half.shape, generator=generator)).clamp(0, 1)
    else:
        half = apply(kind, half)
    return torch.cat([half.detach(), images[len(images) // 2:]])


def _batch_indices(step: int, config: TrainConfig, generated: int, folder: int = 0) -> list[int]:
    """Sample indices of a step: rows 0..generated-1 are rendered captchas, the next `folder` the folder's.

    Each part is read in a fresh permutation each pass, from the seed alone; a batch takes
    `data_weight` of its captchas from the folder.
    """
    from_folder = 0 if not folder else config.batch_size if not generated else round(config.batch_size * config.data_weight)
    index = _part(step, generated, config.batch_size - from_folder, config.seed) if from_folder < config.batch_size else []
    if from_folder:
        index += [generated + i for i in _part(step, folder, from_folder, config.seed + 500_009)]
    return index


def _part(step: int, count: int, per_step: int, seed: int) -> list[int]:
    epoch, position = divmod(step, max(1, count // per_step))
    order = _pass_order(count, seed, epoch)
    return order[position * per_step:(position + 1) * per_step].tolist()


@lru_cache(maxsize=2)
def _pass_order(samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of one pass, drawn once per pass rather than once per step."""
    return torch.randperm(samples, generator=torch.Generator().manual_seed(seed * 7919 + epoch))


@torch.no_grad()
def _validate(model, charset, validation) -> dict[str, float]:
    model.eval()
    solver = Solver(model, charset, {})
    return {name: sequence_accuracy(solver.read(b.images), [charset.normalize(t) for t in b.texts])
            for name, b in validation.items()}


def train_member(name: str, out: Path | None = None, progress: bool = True) -> dict:
    """Train zoo solver `name` as the catalogue (farm.core.zoo) describes it, into the package unless `out`."""
    m = member(name)
    config = TrainConfig(mix=dict(m.mix), samples=m.samples, steps=m.steps, seed=m.seed, lr=m.lr,
                         architecture=m.architecture, model=dict(m.model), augment=tuple(m.augment),
                         eval_every=max(500, m.steps // 5), val_count=200)
    card = train(config, out or zoo_path() / name, progress=progress, command=m.command(), final_count=500,
                 card_fields={"zoo": {"name": name, "role": m.role}})
    return card
