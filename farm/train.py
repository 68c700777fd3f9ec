"""Training a CRNN on a mix of freshly rendered captcha schemes: resumable, reproducible from a seed.

The loop reads top to bottom: render (in worker processes) -> CTC loss -> AdamW step with a
warm-up + cosine learning rate -> now and then a validation pass and a resumable state file.
"""

from __future__ import annotations

import json
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
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from farm.charset import Charset
from farm.checkpoint import Solver, build_model, save_solver_dir
from farm.dataset import TRAIN, VALIDATION, CaptchaStream, render_set
from farm.evaluate import scheme_accuracy, sequence_accuracy
from farm.schemes import get_scheme

__all__ = ["TrainConfig", "train", "mix_charset", "parse_mix"]

log = logging.getLogger(__name__)


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
    architecture: str = "crnn"  # see farm.checkpoint.build_model; zoo solvers use the others
    model: dict = field(default_factory=dict)  # overrides of the architecture's config
    augment: tuple[str, ...] = ()  # attacker-style input changes: noise, blur, binarize, median3, jpeg50
    threads: int = 0  # torch threads for the trainer; 0 = torch's default


def parse_mix(text: str) -> dict[str, float]:
    """'classic=0.5,lines=0.25' -> {'classic': 0.5, 'lines': 0.25}; a bare name weighs 1."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError as e:
            raise ValueError(f"mix: weight of {name!r} is not a number: {weight!r}") from e
    for name in mix:
        get_scheme(name)
    if not mix:
        raise ValueError("mix: name at least one scheme, e.g. classic=0.5,lines=0.25,wave=0.25")
    return mix


def mix_charset(mix: dict[str, float]) -> Charset:
    """One charset covering every scheme of the mix (alphabet order of the first scheme first)."""
    schemes = [get_scheme(n) for n in mix]
    alphabet = "".join(dict.fromkeys("".join(s.alphabet for s in schemes)))
    return Charset(alphabet, min(s.lengths[0] for s in schemes), max(s.lengths[1] for s in schemes))


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_state(path: Path, model, optimizer, step: int, config: TrainConfig, elapsed: float):
    """A resumable state without pickle: tensors in safetensors, the rest in JSON."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "state.safetensors.tmp"))
    (path / "state.safetensors.tmp").replace(path / "state.safetensors")
    (path / "state.json").write_text(json.dumps({"step": step, "elapsed": elapsed, "config": asdict(config),
                                                 "model": model.config.to_dict()}, indent=2))


_RESUME_FREE = ("workers", "threads", "eval_every")  # may change between a run and its resume: same result


def _check_same_run(path: Path, config: TrainConfig) -> None:
    """A resume continues the same run: other settings would silently mix two recipes in one checkpoint."""
    try:
        saved = json.loads((path / "state.json").read_text())["config"]
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"resume: {path / 'state.json'} is unreadable ({e}); remove {path} or use --no-resume") from e
    now = json.loads(json.dumps(asdict(config)))  # tuples as lists, like the saved JSON
    differs = [k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k]]
    if differs:
        raise ValueError(f"resume: {path} holds a run with other settings (differs in {', '.join(differs)}); "
                         f"repeat them, choose another --out, or pass --no-resume to start over")


def _load_state(path: Path, model, optimizer) -> tuple[int, float]:
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt["state"] = state
    optimizer.load_state_dict(opt)
    return meta["step"], meta.get("elapsed", 0.0)


def train(config: TrainConfig, out: Path, resume: bool = True,
          progress: bool = True, command: str | None = None, final_count: int = 1000,
          card_fields: dict | None = None) -> dict:
    """Train and write a checkpoint folder (model.safetensors, card.json) to `out`; returns the card."""
    out = Path(out)
    charset = mix_charset(config.mix)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_model(config.architecture, config.model, num_classes=charset.num_classes)
    model = model.to(memory_format=torch.channels_last)  # faster conv, BN and pooling on CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state_dir = out / "train-state"
    step, elapsed = 0, 0.0
    if resume and (state_dir / "state.json").exists():
        _check_same_run(state_dir, config)
        step, elapsed = _load_state(state_dir, model, optimizer)
        log.info("resuming at step %d", step)
    size = (model.config.input_height, model.config.input_width)
    validation = {name: CaptchaStream({name: 1.0}, config.val_count, config.seed, size, VALIDATION, stop=1).batch(0)
                  for name in config.mix}
    data = render_set(config.mix, config.samples, config.seed, size, TRAIN, config.workers, progress=progress)
    labels = [charset.encode(t) for t in data.texts]
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    started, seen, val, losses = time.perf_counter(), 0, {}, []
    model.train()
    while step < config.steps:
        index = _batch_indices(step, config)
        torch.manual_seed(config.seed * 1_000_003 + step)  # dropout depends on the step only: resumes repeat
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        images = data.images[index].float().div_(255)
        if config.augment:
            images = augment(images, config.augment, torch.Generator().manual_seed(config.seed * 31 + step))
        images = images.contiguous(memory_format=torch.channels_last)
        loss = model.loss(model(images), [labels[i] for i in index])
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
            _save_state(state_dir, model, optimizer, step, config, elapsed + time.perf_counter() - started)
        rate = seen / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{rate:.0f}",
                        **{f"val_{k}": f"{v:.3f}" for k, v in val.items()}, refresh=False)
        bar.update(1)
    bar.close()
    elapsed += time.perf_counter() - started
    model.eval()
    solver = Solver(model, charset, {})
    accuracy = scheme_accuracy(solver, list(config.mix), final_count, seed=config.seed, workers=config.workers,
                               purpose=VALIDATION + 10)
    card = save_solver_dir(
        model, charset, out,
        version=out.name, parent=None,
        schemes={name: {"weight": w, "width": get_scheme(name).width, "height": get_scheme(name).height}
                 for name, w in config.mix.items()},
        training={"config": asdict(config), "samples_seen": config.steps * config.batch_size,
                  "seconds": round(elapsed, 1), "torch": torch.__version__,
                  "loss_start": round(sum(losses[:20]) / max(1, len(losses[:20])), 4) if losses else None,
                  "loss_end": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4) if losses else None,
                  "command": command or " ".join(shlex.quote(a) for a in sys.argv)},
        metrics={"accuracy": {k: round(v["accuracy"], 4) for k, v in accuracy.items()},
                 "accuracy_count": final_count},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **(card_fields or {}))
    return card


def augment(images: torch.Tensor, kinds: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Half of a batch gets one attacker-style change, so the solver reads both kinds."""
    from farm.preprocess import apply
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
    half = images[: len(images) // 2]
    if kind == "noise":
        half = (half + 0.06 * torch.randn(half.shape, generator=generator)).clamp(0, 1)
    else:
        half = apply(kind, half)
    return torch.cat([half.detach(), images[len(images) // 2:]])


def _batch_indices(step: int, config: TrainConfig) -> list[int]:
    """Sample indices of a step: a fresh permutation of the set each pass, from the seed alone."""
    epoch, position = divmod(step, config.samples // config.batch_size)
    order = _pass_order(config.samples, config.seed, epoch)
    return order[position * config.batch_size:(position + 1) * config.batch_size].tolist()


@lru_cache(maxsize=1)
def _pass_order(samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of one pass, drawn once per pass rather than once per step."""
    return torch.randperm(samples, generator=torch.Generator().manual_seed(seed * 7919 + epoch))


@torch.no_grad()
def _validate(model, charset, validation) -> dict[str, float]:
    model.eval()
    solver = Solver(model, charset, {})
    return {name: sequence_accuracy(solver.read(b.images), b.texts) for name, b in validation.items()}
