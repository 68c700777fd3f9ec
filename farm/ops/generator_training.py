"""Training a perturbation generator (farm.core.generator) against the substitute, its donors and copies.

The loop reads top to bottom: render a set of fresh captchas once, the way pools render them
(farm.ops.shard.render_shard under a training secret: never a pool's or a benchmark's captchas), as
the generator reads them (in colour for a colour scheme, else in grey), with the pool's masks and
two-level budget -> for a generator that places dots, first its dot placer learns where edge's
gradient placement puts them (distillation: edge places the dots of the first `placer_captchas`
captchas through the same solvers; the placer learns, by weighted cross-entropy over the band a dot
may reach, where that ink lies), and it dots every training captcha as the `generator` method will,
so the noise learns on what it meets in use -> each step, a batch of captchas each with two codes ->
perturb, round to 8 bits (straight through) -> input diversity as the default attacks with (and on colour, a random grey
conversion bots use) ->
maximise every solver's CTC loss of the true label, capped so captchas already misread stop
steering; a mode-seeking term (Mao et al. 2019) keeps the two codes' perturbations apart, so the
code matters, and a centred generator takes away the pattern a pool would share.
Seeded and resumable (each step draws from its own seed; the state is saved every `every` steps);
progress bar; stops at a CPU budget. `train_for_store` trains against a registry version and
publishes the generator beside it (registry.with_generator): what `farm generator train` and the
fine-tune queue's task run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from farm.core import masks
from farm.core.attacks.base import input_diversity
from farm.core.checkpoint import Solver, read_solver_dir, sha256_hex
from farm.core.attacks.edge import Edge, edge_zones
from farm.core.attacks.generated import dot_placement, with_dots
from farm.core.colour import grey_array
from farm.core.families import DEFAULT_FAMILIES
from farm.core.generator import GeneratorConfig, PerturbationGenerator, generator_bytes, generator_card, load_generator
from farm.core.model import to_arrays, to_planes, to_tensor
from farm.core.presets import DEFAULT_PRESET
from farm.core.preprocess import random_conversion
from farm.core.preprocess.ops import straight_through
from farm.core.schemes import get_scheme
from farm.core.seeds import Seeds
from farm.core.spec import MAX_SHARD_SIZE, PoolSpec
from farm.core.zoo import HELD_OUT
from farm.exceptions import HeldOutError, SettingError
from farm.ops.resume import check_same_run, has_state, load_state, save_state
from farm.ops.shard import CleanShard, attack_solvers, perturb, render_shard
from farm.storage import registry
from farm.storage.store import Store

__all__ = ["GeneratorTraining", "TrainingSet", "training_set", "train_generator", "training_spec", "train_for_store",
           "save_generator_dir", "load_generator_dir"]

TRAINING_SECRET = b"captchafarm generator training"  # a stream of its own: no pool or benchmark draws from it


@dataclass
class GeneratorTraining:
    """What a generator training run does; saved in the card so the run can be repeated."""

    preset: str = "generator"  # whose budgets and mask the generator is trained (and bound) to: the default pools'
    # (farm.core.presets)
    scheme: str = "classic"  # whose captchas: a colour scheme's generator perturbs each channel
    ensemble: tuple[str, ...] = ("crnn-b", "resnet-a")  # zoo donors trained against beside the substitute, its
    # card's donors and its hardened copies: the default colour pools are aimed at both
    captchas: int = 4000  # distinct training captchas, rendered once (rendering costs as much as a step)
    steps: int = 1500
    batch_size: int = 16  # captchas a step, each with two codes: 2 x batch_size perturbed images
    lr: float = 1e-3
    diversity: float = 0.7  # input diversity, as the default
    loss_cap: float = 10.0  # nats of CTC loss past which a captcha no longer steers (p(label) < 5e-5)
    mode_seeking: float = 1.0  # weight of the term that keeps two codes' perturbations apart
    shared: float = 0.0  # weight of the batch's mean perturbation (squared, per budget): what a pool's mean would
    # give an attacker to subtract
    teacher: int = 0  # captchas (the first ones) the default attack perturbs as a teacher to distil; 0: none
    distil: float = 10.0  # weight of the squared gap to the teacher's perturbation (per budget, 0 to 4)
    dots: int | None = None  # dots its placer learns to place; None: as the scheme's default pool does (edge's 8 on
    # colour, where ink is the default family; none on grey, where it is noise); 0: no placer
    placer_captchas: int = 1200  # captchas whose edge placement the dot placer learns from (at most `captchas`)
    placer_steps: int = 800
    conversions: float = 0.5  # colour schemes: probability a step reads through a random grey conversion bots use,
    # as the default's colour attacks (a generator trained on BT.601 alone leaves HSV saturation to bots)
    seed: int = 0
    cpu_minutes: float | None = None  # stop early once this process has used this much CPU (screening)
    generator: dict | None = None  # overrides of GeneratorConfig (over a centred generator)

    def validate(self) -> "GeneratorTraining":
        for name in ("captchas", "steps", "batch_size", "placer_steps"):
            if getattr(self, name) < 1:
                raise SettingError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if self.captchas > MAX_SHARD_SIZE:
            raise SettingError(f"captchas: at most {MAX_SHARD_SIZE}, rendered as one shard (got {self.captchas})")
        if self.placer_captchas < 1 or (self.dots is not None and self.dots < 0):
            raise SettingError(f"placer_captchas must be at least 1 and dots 0 or more (got {self.placer_captchas}, "
                               f"{self.dots})")
        if not 0 <= self.teacher <= self.captchas:
            raise SettingError(f"teacher: must be 0 to captchas ({self.captchas}), got {self.teacher}")
        for name in ("diversity", "conversions"):
            if not 0 <= getattr(self, name) <= 1:
                raise SettingError(f"{name}: must be in [0, 1] (got {getattr(self, name)})")
        get_scheme(self.scheme)  # SettingError naming the known ones for an unknown scheme
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorTraining":
        """From JSON (a task's argument, a card's record of its run); SettingError naming an unknown field."""
        if not isinstance(data, dict):
            raise SettingError(f"config: must be a JSON object of generator training settings (got {data!r})")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SettingError(f"config: unknown generator training settings {unknown}; known: "
                               f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**{**data, **({"ensemble": tuple(data["ensemble"])} if "ensemble" in data else {})})

    def model_config(self) -> GeneratorConfig:
        """Centred, of the scheme's channels (a colour scheme's generator perturbs each channel), placing the dots of
        `dots` (by default the scheme's default pool's, edge's on colour) with edge's dot width and band."""
        mode = get_scheme(self.scheme).mode
        channels = 3 if mode == "RGB" else 1
        edge = self.edge_settings()
        dots = self.dots if self.dots is not None else (edge["dots"] if DEFAULT_FAMILIES[mode] == "ink" else 0)
        return GeneratorConfig(**{"centred": True, "channels": channels, "dots": dots, "dot_width": edge["dot_width"],
                                  "band": edge["band"], **(self.generator or {})})

    def edge_settings(self) -> dict:
        """The edge preset's settings for the scheme (its colour values on colour): whose placement is distilled."""
        return PoolSpec.from_preset("edge", count=1, scheme=self.scheme).attack_settings()


@dataclass
class TrainingSet:
    """Clean captchas with what the generator needs. Shape: tensors (N, 1, H, W) float."""

    images: torch.Tensor
    glyphs: torch.Tensor
    budget: torch.Tensor
    allowed: torch.Tensor
    texts: list[str]


def as_read(images: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 captchas as a generator of `channels` reads them: (N, channels, H, W) in [0, 1] (grey: BT.601)."""
    if channels == 1:
        images = np.stack([grey_array(image) for image in images])  # as the solvers read colour
    return to_tensor(list(images))


def training_set(spec: PoolSpec, clean: CleanShard, channels: int = 1) -> TrainingSet:
    """A shard's clean captchas (farm.ops.shard.render_shard) as a generator of `channels` reads them, with that
    pool's mask and two-level budget as tensors."""
    budget = masks.glyph_budget(spec, clean.glyphs)
    if budget is None and spec.norm == "linf":
        budget = np.full(clean.glyphs.shape, spec.eps)
    if budget is None:
        raise SettingError(f"norm: the generator is bounded in L-inf; the preset's norm is {spec.norm}")
    return TrainingSet(as_read(clean.images, channels), to_planes(clean.glyphs).float(), to_planes(budget).float(),
                       to_planes(clean.allowed).float(), clean.texts)


def teacher_perturbations(spec: PoolSpec, clean: CleanShard, substitute: Solver, count: int,
                          channels: int = 1) -> torch.Tensor:
    """(count, channels, H, W): the recommended attack's perturbations of the first `count` captchas within `spec`'s
    mask and budget, the teacher."""
    first = CleanShard(clean.indices[:count], clean.texts[:count], clean.images[:count], clean.glyphs[:count],
                       clean.allowed[:count])
    teacher = PoolSpec.from_preset(DEFAULT_PRESET, count=count, shard_size=count, scheme=spec.scheme, seed=spec.seed,
                                   mask=spec.mask, eps=spec.eps, eps_glyph=spec.eps_glyph).validate()
    adversarial = perturb(teacher, first, [substitute], shard=0)
    return as_read(adversarial, channels) - as_read(first.images, channels)


def _ctc_losses(solvers: list[Solver], x: torch.Tensor, labels: list[list[int]]) -> list[torch.Tensor]:
    return [s.model.loss(s.model(x), labels, reduction="none") for s in solvers]


def train_generator(solvers: list[Solver], config: GeneratorTraining, progress: bool = True,
                    generator: PerturbationGenerator | None = None, checkpoint: Callable | None = None,
                    every: int = 100, state: Path | None = None) -> tuple[PerturbationGenerator, dict]:
    """Train (or go on training `generator`) against `solvers` (substitute first, then donors; never held-out).

    checkpoint(model, summary) is called every `every` steps and at the end (e.g. save_generator_dir).
    state: a folder where the run saves its state every `every` steps and from which it resumes (the same
    settings, SettingError otherwise): a resumed run ends where an uninterrupted one would.
    """
    config.validate()
    torch.manual_seed(config.seed)
    held_out = [s.card["zoo"]["name"] for s in solvers if s.card.get("zoo", {}).get("role") == HELD_OUT]
    if held_out:
        raise HeldOutError(f"solvers: {', '.join(held_out)} held out; a generator trains against donors only")
    spec = PoolSpec.from_preset(config.preset, count=config.captchas, shard_size=config.captchas,
                                scheme=config.scheme, seed=config.seed).validate()
    started, cpu_started = time.perf_counter(), time.process_time()
    seeds = Seeds(TRAINING_SECRET)
    clean = render_shard(spec, 0, seeds)
    channels = (generator.config if generator is not None else config.model_config()).channels
    data = training_set(spec, clean, channels)  # codes are drawn afresh each step: a captcha meets many
    render_seconds = time.perf_counter() - started
    teacher = (teacher_perturbations(spec, clean, solvers[0], config.teacher, channels) if config.teacher
               else None)
    teacher_seconds = time.perf_counter() - started - render_seconds
    charset = solvers[0].charset
    labels = [charset.encode(charset.normalize(t)) for t in data.texts]
    with _steering(solvers):
        model = generator or PerturbationGenerator(config.model_config())
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        step = 0
        if state is not None and has_state(state):
            check_same_run(state, config, free=("cpu_minutes",), flag="--restart")
            step, _ = load_state(state, model, optimiser)
        placer = None
        if model.config.dots:  # the placer first: the noise then learns on the dotted captchas it will meet
            placer = _trained_placer(model, solvers, config, clean, progress, state, step, optimiser)
            data = replace(data, images=as_read(dotted(model, solvers, clean, config.seed), data.images.shape[1]))
        shape, channels = tuple(data.images.shape[-2:]), model.config.code_channels
        history = []
        bar = tqdm(total=config.steps, initial=step, desc="train generator", unit="step", disable=not progress)
        while step < config.steps:
            for group in optimiser.param_groups:  # cosine schedule, by the step: a resumed run keeps it
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # the step's own draws: resumes repeat
            rows = torch.randint(0, config.captchas, (config.batch_size,), generator=rng)
            twice = torch.cat([rows, rows])  # each captcha with two codes
            codes = torch.randn(len(twice), channels, -(-shape[0] // 4), -(-shape[1] // 4), generator=rng)
            x0 = data.images[twice]
            delta = model(x0, data.glyphs[twice], codes, data.budget[twice], data.allowed[twice])
            x = (x0 + delta).clamp(0, 1)
            x = straight_through(x, x.mul(255).round().div(255))  # what a PNG holds
            x = input_diversity(x, config.diversity, rng)
            if x.shape[1] == 3:  # colour: read through a grey conversion bots use, as the default's colour attacks
                x = random_conversion(x, config.conversions, rng)
            batch_labels = [labels[i] for i in twice.tolist()]
            losses = _ctc_losses(solvers, x, batch_labels)
            fooling = sum(loss.clamp(max=config.loss_cap).mean() for loss in losses) / len(losses)
            half = len(rows)
            # 0: codes ignored; 1: opposite signs
            apart = ((delta[:half] - delta[half:]).abs() / data.budget[rows]).mean()
            objective = -fooling - config.mode_seeking * apart.clamp(max=0.5)
            if config.shared:
                objective = objective + config.shared * (delta / data.budget[twice]).mean(0).pow(2).mean()
            taught = twice < len(teacher) if teacher is not None else None
            if taught is not None and taught.any():  # distil: the default's perturbation of a captcha, per budget
                rows_taught = twice[taught]
                gap = (delta[taught] - teacher[rows_taught]) / data.budget[rows_taught]
                objective = objective + config.distil * gap.pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            objective.backward()
            optimiser.step()
            step += 1
            record = {"step": step, "loss": [round(float(loss.detach().mean()), 3) for loss in losses],
                      "apart": round(float(apart.detach()), 3),
                      "used": round(float((delta.detach().abs() / data.budget[twice]).mean()), 3)}
            history.append(record)
            bar.set_postfix(ctc="/".join(f"{v:.1f}" for v in record["loss"]), apart=f"{record['apart']:.2f}",
                            used=f"{record['used']:.2f}")
            bar.update()
            if step % every == 0:
                if state is not None:
                    save_state(state, model, optimiser, step, config, time.perf_counter() - started)
                if checkpoint:
                    checkpoint(model, _summary(config, solvers, history, step, started, cpu_started, render_seconds,
                                               teacher_seconds))
            if config.cpu_minutes is not None and time.process_time() - cpu_started > 60 * config.cpu_minutes:
                break
        bar.close()
        model.eval()
        summary = _summary(config, solvers, history, step, started, cpu_started, render_seconds, teacher_seconds)
        summary["placer"] = placer
        if state is not None:
            save_state(state, model, optimiser, step, config, time.perf_counter() - started)
        if checkpoint:
            checkpoint(model, summary)
        return model, summary


def train_placer(model: PerturbationGenerator, solvers: list[Solver], config: GeneratorTraining, clean: CleanShard,
                 progress: bool = True) -> dict:
    """Distil edge's gradient placement through `solvers` into the generator's dot placer; returns what it did.

    Edge places the generator's `dots` on the first `placer_captchas` clean captchas; the placer learns where
    that ink lies, by cross-entropy over the band a dot may reach (the ink weighted up to the band's share).
    """
    started = time.process_time()
    n = min(config.placer_captchas, len(clean.texts))
    images = to_tensor(list(clean.images[:n]))
    glyphs, allowed = to_planes(clean.glyphs[:n]), to_planes(clean.allowed[:n])
    settings = {**config.edge_settings(), "dots": model.config.dots, "steps": 1}  # its noise is not what is learned
    settings["dot_rounds"] = min(settings["dot_rounds"], model.config.dots)
    edge = Edge(solvers, **settings, seed=config.seed)
    edge(images, clean.texts[:n], allowed, glyphs=glyphs)
    target = (torch.cat(edge.ink) > 0.5).float()
    zones = edge_zones(clean.glyphs[:n], model.config.band, model.config.dot_width)
    centres, reach = (to_planes(zone).float() for zone in zones)
    teacher_seconds = time.process_time() - started
    share = ((target * reach).sum() / reach.sum().clamp_min(1)).clamp_min(1e-6)
    optimiser = torch.optim.Adam(model.placer.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(config.seed)
    model.placer.train()
    losses = []
    for _ in tqdm(range(config.placer_steps), desc="train dot placer", unit="step", disable=not progress):
        rows = torch.randint(0, n, (32,), generator=rng)
        logits = model.dot_logits(images[rows], glyphs[rows], centres[rows])
        loss = F.binary_cross_entropy_with_logits(logits, target[rows], reduction="none",
                                                  pos_weight=(1 - share) / share)
        loss = (loss * reach[rows]).sum() / reach[rows].sum().clamp_min(1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    model.placer.eval()
    return {"captchas": n, "steps": config.placer_steps, "dots": model.config.dots,
            "teacher_cpu_seconds": round(teacher_seconds, 1),
            "cpu_seconds": round(time.process_time() - started, 1),
            "final_loss": round(float(np.mean(losses[-50:])), 4)}


def _trained_placer(model, solvers, config, clean, progress, state, step, optimiser) -> dict:
    """Train the dot placer, or take the one a resumed run's state holds (its summary in placer.json there)."""
    saved = Path(state) / "placer.json" if state is not None else None
    if saved is not None and saved.exists():
        return json.loads(saved.read_text())
    placer = train_placer(model, solvers, config, clean, progress)
    if saved is not None:
        save_state(state, model, optimiser, step, config, 0.0)
        saved.write_text(json.dumps(placer))
    return placer


def dotted(model: PerturbationGenerator, solvers: list[Solver], clean: CleanShard, seed: int,
           batch_size: int = 256) -> np.ndarray:
    """The clean captchas (uint8, as clean.images) with the generator's dots, placed as the `generator` method places
    them (farm.core.attacks.generated.with_dots) within each captcha's mask."""
    placement = dot_placement(solvers, model, model.config.dots)
    centres, reach = edge_zones(clean.glyphs, model.config.band, model.config.dot_width)
    plane = lambda a: to_planes(a).float()  # noqa: E731
    rng = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for start in range(0, len(clean.texts), batch_size):
            sl = slice(start, start + batch_size)
            x0 = to_tensor(list(clean.images[sl]))
            x = with_dots(placement, model, x0, clean.texts[sl], plane(clean.glyphs[sl]), plane(centres[sl]),
                          plane(reach[sl] & clean.allowed[sl]), rng)
            out.append(to_arrays(x))
    return np.concatenate(out)


@contextmanager
def _steering(solvers: list[Solver]):
    """The solvers in eval mode and frozen while they steer; their weights given back as they were (a worker's cached
    substitute may be fine-tuned next)."""
    frozen = [p for solver in solvers for p in solver.model.parameters() if p.requires_grad]
    for solver in solvers:
        solver.model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _summary(config, solvers, history, step, started, cpu_started, render_seconds, teacher_seconds) -> dict:
    last = history[-50:]
    return {"steps": step, "seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(time.process_time() - cpu_started, 1), "render_seconds": round(render_seconds, 1),
            "teacher_seconds": round(teacher_seconds, 1),
            "solvers": [s.card.get("zoo", {}).get("name") or s.version for s in solvers],
            "final_ctc": [round(float(np.mean([r["loss"][k] for r in last])), 3) if last else None
                          for k in range(len(solvers))],
            "final_apart": round(float(np.mean([r["apart"] for r in last])), 3) if last else None,
            "config": asdict(config),
            "history": history[::25]}


def save_generator_dir(model: PerturbationGenerator, directory: Path, **card_fields) -> dict:
    """Write model.safetensors and card.json into a folder; returns the card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = generator_bytes(model)
    card = generator_card(model, weights, **card_fields)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def load_generator_dir(directory: Path) -> PerturbationGenerator:
    """The generator a folder holds, sha256-checked; CheckpointError naming what is missing or wrong."""
    return load_generator(*read_solver_dir(directory, what="generator"))


def training_spec(config: GeneratorTraining) -> PoolSpec:
    """The pool a generator trained by `config` stands in for: method generator with the preset's mask and glyph
    budget and the config's donors (whose solvers it trains against: farm.ops.shard.attack_solvers)."""
    return PoolSpec.from_preset(config.preset, method="generator", scheme=config.scheme, ensemble=config.ensemble,
                                count=1).validate()


def train_for_store(store: Store, config: GeneratorTraining, work: Path, progress: bool = True, device: str = "cpu",
                    restart: bool = False) -> dict:
    """Train a generator against CURRENT (its substitute, donors and hardened copies) and publish it beside CURRENT's
    weights as a new version of the same generation (registry.with_generator).

    The run's state lives in `work`, one folder per version trained against: run again to resume one
    stopped (by `cpu_minutes`, or killed); `restart` starts it over. A run stopped before its last step
    publishes nothing. Returns {version, base, steps, complete, ...the training summary}.
    """
    registry.ensure_current(store)
    base = registry.load(store, device=device)
    solvers = attack_solvers(training_spec(config), base, device)
    # never resumes a run against another version, or another store's version of that name
    state = Path(work) / f"{sha256_hex(store.url.encode())[:8]}-{base.version}-{base.sha256[:12]}"
    if restart and state.exists():
        shutil.rmtree(state)
    model, summary = train_generator(solvers, config, progress, state=state)
    result = {"base": base.version, "version": None, "complete": summary["steps"] >= config.steps,
              "state": str(state), **{k: summary[k] for k in ("steps", "seconds", "cpu_seconds", "solvers",
                                                               "final_ctc", "final_apart")}}
    if not result["complete"]:
        return result
    weights = generator_bytes(model)
    card = generator_card(model, weights, trained_against={"version": base.version, "sha256": base.sha256,
                                                           "solvers": summary["solvers"]},
                          training={k: v for k, v in summary.items() if k != "history"})
    result["version"] = registry.with_generator(store, base.version, weights, card)
    shutil.rmtree(state, ignore_errors=True)  # published: nothing left to resume
    return result
