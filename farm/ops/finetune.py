"""Model extraction: fine-tune the substitute on what attackers answered (advCAPTCHA, section 5).

An attacker's submitted answer to a captcha is a query to its solving model: the pairs (image,
answer) teach the substitute to read like the bot, so captchas perturbed against the next
version transfer to the bots actually seen. Only the bot's mistakes are learned by default (the
pool's keys tell them apart): its right answers would teach the substitute to read through its
own perturbations, and the next pool fooled bots less. Each batch mixes answer records with a replay of
clean captchas of the substitute's own schemes, so it keeps reading them; part of the answers is
held out and training stops when agreement with them stops rising; a guard refuses to promote a
model that lost clean accuracy on the target schemes beyond a tolerance (it is kept unpromoted,
marked refused). A long run never throws its result away: a base that is not CURRENT is refused
before training (unless the result is to stay unpromoted), and a run that loses the race for
CURRENT at the end keeps its result as an unpromoted version. The new card also names
the zoo donors that fail where the attackers failed (farm.ops.resemblance): pools of the new version
are aimed at them too. And it makes the farm's move (farm.ops.move): once the bot reads a family of
perturbation, the new version's pools are of another; a new family publishes a version even when
no weights moved and no donor was named (the base's weights, the new family in the card).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from farm.storage import registry
from farm.storage.answers import batches, read_batch
from farm.core.checkpoint import Solver, build_card, input_bytes, weights_bytes
from farm.core.defaults import FinetuneConfig
from farm.core.dataset import EVALUATION, TRAIN, VALIDATION, render_set
from farm.ops.evaluate import scheme_accuracy, sequence_accuracy
from farm.exceptions import AnswersError, ConflictError, FarmError, FinetuneRefused, SettingError
from farm.core.charset import Charset
from farm.storage.folder import read_folder
from farm.core.charset import MAX_ANSWER_CHARS
from farm.storage.layout import check_pool_name, decode_png, image_key
from farm.ops.move import choose_family, evidence, learned
from farm.ops.resemblance import choose_donors
from farm.storage.store import Store
from farm.core.families import card_family
from farm.core.zoo import card_ensemble
from farm.core.spec import PoolSpec, scheme_mode
from farm.storage.manifest import read_manifest
from farm.storage.pools import pool_family, read_keys

__all__ = ["FinetuneConfig", "Queries", "load_queries", "agreement", "finetune",
           "folder_queries", "check_base"]

log = logging.getLogger(__name__)
_ID = re.compile(r"[0-9a-f]{32}")
MIN_QUERIES = 10  # fewer usable answers say nothing about the attacker


@dataclass
class Queries:
    """Answered captchas, one row each, resolved to images at the model's input size.

    Shape: images uint8 (N, 1, H, W). An answer is None where the attacker typed no label (wrong
    length or alphabet): never learned, yet its failure, which resemblance counts.
    """

    images: torch.Tensor
    answers: list[str | None]
    holdout: torch.Tensor  # bool (N,): kept apart to measure agreement
    solved: torch.Tensor  # bool (N,): the attacker answered right (by the pool's keys); False for labelled folders
    schemes: list[str]  # the target schemes: those of the answered pools
    skipped: dict[str, int] = field(default_factory=dict)
    pictures: list = field(default_factory=list)  # an answered captcha as served, uint8 (H, W); None: no pool row
    truths: list[str | None] = field(default_factory=list)  # an answered captcha's true text; None: no pool row
    aims: list[frozenset] = field(default_factory=list)  # the zoo donors an answered captcha was perturbed against
    pools: list[str] = field(default_factory=list)  # the pools answered (at least one usable record each)
    families: list[str | None] = field(default_factory=list)  # an answered captcha's pool's family; None: no pool row

    @property
    def learnable(self) -> torch.Tensor:
        """bool (N,): the rows whose answer is a label."""
        return torch.tensor([a is not None for a in self.answers], dtype=torch.bool)

    def split(self, held: bool, mistakes_only: bool = False) -> tuple[torch.Tensor, list[str]]:
        """Held-out rows or the training rows of labels, without the attacker's right answers when `mistakes_only`."""
        keep = (self.holdout if held else ~self.holdout) & self.learnable & ~(self.solved & mistakes_only)
        rows = keep.nonzero().squeeze(1).tolist()
        return self.images[rows], [self.answers[i] for i in rows]

    def answered(self) -> tuple[list, list[str], list[bool], list[frozenset]]:
        """(pictures, true texts, attacker right, donors aimed at) of every answered captcha whose truth is kept."""
        rows = [i for i, truth in enumerate(self.truths) if truth is not None]
        return ([self.pictures[i] for i in rows], [self.truths[i] for i in rows],
                [bool(self.solved[i]) for i in rows], [self.aims[i] for i in rows])


def _held_out(record: dict, share: float, seed: int) -> bool:
    """A stable split: the same captcha is held out on every run and every worker."""
    digest = hashlib.sha256(f"{seed}/{record['pool']}/{record['captcha_id']}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


def load_queries(store: Store, batch_keys: list[str], solver: Solver, config: FinetuneConfig) -> Queries:
    """Resolve answer batches to (image, answer) pairs; records that cannot serve are counted by reason."""
    skipped: Counter = Counter()
    seen, images, answers, held, solved, schemes, truths = set(), [], [], [], [], {}, {}
    pictures, true_texts, aims, pool_aims, pool_families, families = [], [], [], {}, {}, []
    for key in batch_keys:
        try:
            records = read_batch(store, key)
        except KeyError:
            raise AnswersError(f"answers: batch {key} is not in {store.url}; see `farm answers list`") from None
        for record in records:
            if not isinstance(record, dict) or not all(isinstance(record.get(f), str)
                                                       for f in ("pool", "captcha_id", "answer", "risk")):
                skipped["malformed"] += 1
                continue
            if record["risk"] not in config.risks:
                skipped["risk"] += 1  # a person's answer says nothing about the bots
                continue
            try:
                check_pool_name(record["pool"])
                if not _ID.fullmatch(record["captcha_id"]):
                    raise ValueError("captcha_id")
            except ValueError:
                skipped["invalid"] += 1  # a foreign pool or id
                continue
            try:
                answer = solver.charset.label(record["answer"])
            except ValueError:
                answer = None  # wrong length or alphabet: no label to learn, yet the bot's failure
            identity = (record["pool"], record["captcha_id"], answer or record["answer"])
            if identity in seen:
                skipped["duplicate"] += 1
                continue
            try:
                image = decode_png(store.get(image_key(record["pool"], record["captcha_id"])))
            except KeyError:
                skipped["missing_image"] += 1
                continue
            except OSError:
                skipped["unreadable_image"] += 1
                continue
            if record["pool"] not in schemes:
                try:
                    manifest = read_manifest(store, record["pool"])
                    spec = PoolSpec.from_dict(manifest["spec"])
                except FarmError:
                    manifest, spec = None, None
                schemes[record["pool"]] = spec.scheme if spec else None
                pool_families[record["pool"]] = pool_family(manifest) if manifest else None
                keys = read_keys(store, record["pool"])
                truths[record["pool"]] = {k["id"]: solver.charset.normalize(k["answer"]) for k in keys}
                pool_aims[record["pool"]] = _aims(store, spec, keys)
            seen.add(identity)
            if answer is None:
                skipped["unreadable_answer"] += 1  # kept as a row: the bot's failure, never learned
            images.append(input_bytes(solver, [image]))
            answers.append(answer)
            held.append(_held_out(record, config.holdout, config.seed))
            true_texts.append(truths[record["pool"]].get(record["captcha_id"]))
            families.append(pool_families[record["pool"]] if true_texts[-1] is not None else None)
            solved.append(answer is not None and true_texts[-1] == answer)
            pictures.append(image)
            aims.append(pool_aims[record["pool"]].get(record["captcha_id"], frozenset()))
    labels = [i for i, a in enumerate(answers) if a is not None]
    if len(labels) < MIN_QUERIES:
        raise AnswersError(f"answers: only {len(labels)} usable records (skipped: {dict(skipped) or 'none'}); "
                           f"a fine-tune needs at least {MIN_QUERIES} attacker answers to pools of this store")
    holdout = torch.tensor(held)
    if holdout[labels].all() or not holdout[labels].any():  # tiny batches: still keep both sides
        holdout[:] = False
        holdout[labels[:: max(2, round(1 / config.holdout))]] = True
    return Queries(torch.cat(images), answers, holdout, torch.tensor(solved),
                   sorted({s for s in schemes.values() if s}), dict(skipped), pictures, true_texts, aims,
                   sorted(schemes), families)


def _aims(store: Store, spec, keys: list[dict]) -> dict[str, frozenset]:
    """Captcha id -> the donors it was perturbed against: the pool's --ensemble and its substitute's card's.

    A donor a captcha was aimed at fails on it by construction, so its failures there say nothing
    about resembling the attacker (farm.ops.resemblance).
    """
    spec_donors = frozenset(spec.ensemble) if spec else frozenset()
    cards: dict = {}
    for version in {k.get("substitute") for k in keys}:
        try:
            cards[version] = frozenset(card_ensemble(registry.card(store, version))) if version else frozenset()
        except (FarmError, ValueError):
            cards[version] = frozenset()  # a version gone from the registry: its own donors are unknown
    return {k["id"]: spec_donors | cards[k.get("substitute")] for k in keys}


def folder_queries(folder: str | Path, solver: Solver, config: FinetuneConfig) -> Queries:
    """A platform's labelled captchas as queries: true answers instead of an attacker's (farm.storage.folder)."""
    data = read_folder(folder, Charset(solver.charset.alphabet, 1, MAX_ANSWER_CHARS), glyphs=False)
    held = torch.from_numpy(data.held_out(config.holdout))
    none = [None] * len(data.texts)  # no attacker: nothing to resemble
    return Queries(input_bytes(solver, data.images), data.texts, held, torch.zeros_like(held), [], {}, none, none,
                   [frozenset()] * len(data.texts), [], none)


def merge(first: Queries, second: Queries) -> Queries:
    return Queries(torch.cat([first.images, second.images]), first.answers + second.answers,
                   torch.cat([first.holdout, second.holdout]), torch.cat([first.solved, second.solved]),
                   sorted(set(first.schemes) | set(second.schemes)),
                   {k: first.skipped.get(k, 0) + second.skipped.get(k, 0) for k in {**first.skipped, **second.skipped}},
                   first.pictures + second.pictures, first.truths + second.truths, first.aims + second.aims,
                   sorted(set(first.pools) | set(second.pools)), first.families + second.families)


def agreement(solver: Solver, images: torch.Tensor, answers: list[str]) -> float:
    """Share of captchas the solver reads exactly as the attacker answered."""
    return sequence_accuracy(solver.read(images.float().div(255)), answers)


def _agreements(solver: Solver, held: tuple, held_mistakes: tuple) -> dict:
    """Agreement on every held-out answer, and on the attacker's held-out mistakes alone.

    Only the second is extraction: reading a perturbed captcha right agrees with a bot that read
    it right too, and says nothing about how the bot reads.
    """
    on_mistakes = round(agreement(solver, *held_mistakes), 4) if held_mistakes[1] else None
    return {"agreement": round(agreement(solver, *held), 4), "agreement_on_mistakes": on_mistakes}


def _clean_accuracy(solver: Solver, schemes: list[str], config: FinetuneConfig) -> dict[str, float]:
    got = scheme_accuracy(solver, schemes, config.guard_count, seed=config.seed, workers=0, purpose=EVALUATION)
    return {name: round(r["accuracy"], 4) for name, r in got.items()}


def fit(base: Solver, images: torch.Tensor, labels: list[str], held_images: torch.Tensor, held_labels: list[str],
        config: FinetuneConfig, progress: bool = True, guard=None) -> Solver:
    """A copy of `base` trained on (images, labels) mixed with clean replay of its schemes.

    Keeps the weights that agree best with the held-out labels (the base's when none does
    better) and stops after `patience` evaluations without progress. With `guard` (a Batch of
    clean captchas), only weights that read them within half the tolerance of the base qualify:
    the best admissible model, not the one that drifted furthest. The returned solver's card
    holds `best_step` and `history`. Shape: images uint8 (N, 1, H, W) at the model's input size.
    """
    model = copy.deepcopy(base.model)
    solver = Solver(model, base.charset, {})
    device = next(model.parameters()).device
    workers = 0 if torch.cuda.is_initialized() else config.workers  # never fork a process holding CUDA
    mix = {name: spec["weight"] for name, spec in (base.card.get("schemes") or {}).items()}
    size = (model.config.input_height, model.config.input_width)
    n_replay = round(config.batch_size * config.replay) if mix else 0  # a folder-only substitute: no scheme to replay
    replay = render_set(mix, config.replay_count, config.seed + 7, size, TRAIN, workers,
                        grey=model.config.grey) if n_replay else None
    encoded = [base.charset.encode(a) for a in labels]
    replay_labels = [base.charset.encode(t) for t in replay.texts] if replay else []
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    best = (agreement(base, held_images, held_labels), 0, copy.deepcopy(model.state_dict()))
    if guard is not None:
        floor = agreement(base, guard.images, guard.texts) - config.tolerance / 2
    history, stale, step = [], 0, 0
    bar = tqdm(total=config.steps, desc="finetune", unit="step", disable=not progress, dynamic_ncols=True)
    while step < config.steps and stale < config.patience:
        model.train()
        rows = torch.randint(len(labels), (config.batch_size - n_replay,), generator=generator).tolist()
        batch, targets = [images[rows]], [encoded[i] for i in rows]
        if replay is not None:
            extra = torch.randint(len(replay_labels), (n_replay,), generator=generator).tolist()
            batch.append(replay.images[extra])
            targets += [replay_labels[i] for i in extra]
        loss = model.loss(model(torch.cat(batch).to(device).float().div_(255)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            score = agreement(solver, held_images, held_labels)
            history.append({"step": step, "agreement": round(score, 4), "loss": round(loss.item(), 4)})
            admissible = True
            if guard is not None:
                history[-1]["clean"] = round(clean := agreement(solver, guard.images, guard.texts), 4)
                admissible = clean >= floor
            bar.set_postfix(agreement=f"{score:.3f}", loss=f"{loss.item():.3f}", refresh=False)
            if admissible and score > best[0]:
                best, stale = (score, step, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
    bar.close()
    model.load_state_dict(best[2])
    model.eval()
    solver.card.update(best_step=best[1], history=history, guard_floor=round(floor, 4) if guard is not None else None)
    return solver


def check_base(store: Store, base: str | None, promote: bool = True, flag: str = "--no-promote") -> str:
    """The version to fine-tune: `base`, or CURRENT. Checked before any training step.

    A result is promoted only on top of CURRENT, so a `base` that is not CURRENT is refused at
    once (hours of training would end in a lost race) unless the result is to stay unpromoted.
    """
    if base is not None and not promote:
        return base
    now = registry.ensure_current(store)["version"]
    if base not in (None, now):
        raise SettingError(f"base: {base} is not CURRENT ({now}), so its fine-tune could not be promoted; fine-tune "
                           f"{now} (leave out the base), or pass {flag} to publish the result unpromoted and "
                           f"`farm checkpoint promote` it later")
    return now


def finetune(store: Store, batch_keys: list[str], base: str | None = None, config: FinetuneConfig | None = None,
             publish: bool = True, progress: bool = True, command: str | None = None, device: str = "cpu",
             data: str | Path | None = None, promote: bool = True) -> dict:
    """Fine-tune `base` (default: CURRENT) on answer batches and/or a labelled folder; publish on top of `base`.

    Returns what happened (versions, agreement and clean accuracy before and after, counts;
    `promoted` False and `reason` when the new version is not CURRENT). Raises SettingError when
    `base` is not CURRENT and `promote` is on (before training), FinetuneRefused when the guard
    fails (a model that learned something is kept unpromoted, marked refused), AnswersError when
    the answers cannot serve. When another version became CURRENT meanwhile, or without
    `promote`, the result is published unpromoted.
    """
    config = (config or FinetuneConfig()).validate()
    started = time.perf_counter()
    parent = check_base(store, base, promote=promote and publish)
    base_solver = registry.load(store, parent, device=device)
    if not batch_keys and data is None:
        raise SettingError("finetune: give answer batches, a labelled folder (--data), or both")
    queries = load_queries(store, batch_keys, base_solver, config) if batch_keys else None
    if data is not None:
        labelled = folder_queries(data, base_solver, config)
        queries = merge(queries, labelled) if queries else labelled
    targets = queries.schemes or list(base_solver.card.get("schemes") or [])  # none: a folder-only substitute
    train_images, train_answers = queries.split(held=False, mistakes_only=config.mistakes_only)
    if not train_answers:
        raise AnswersError("answers: the attacker answered every training captcha right, which leaves no mistake to "
                           "learn from; give more answers, or learn its right answers too (--all-answers)")
    held_images, held_answers = queries.split(held=True)
    held_mistakes = queries.split(held=True, mistakes_only=True)
    before = {**_agreements(base_solver, (held_images, held_answers), held_mistakes),
              "clean": _clean_accuracy(base_solver, targets, config)}

    size = (base_solver.model.config.input_height, base_solver.model.config.input_width)
    # the guard inside the fit: other captchas (VALIDATION) than the final check's (EVALUATION), as many
    guard = render_set({name: 1.0 for name in targets}, config.guard_count * len(targets), config.seed, size,
                       VALIDATION, 0, grey=base_solver.model.config.grey) if targets else None
    solver = fit(base_solver, train_images, train_answers, held_images, held_answers, config, progress, guard)
    model = solver.model
    best_step, history = solver.card["best_step"], solver.card["history"]
    after = {**_agreements(solver, (held_images, held_answers), held_mistakes),
             "clean": _clean_accuracy(solver, targets, config)}
    drops = {name: round(before["clean"][name] - after["clean"][name], 4) for name in targets}
    kept = card_ensemble(base_solver.card)  # the answers cannot judge donors their captchas were aimed at: kept
    named, resembles = choose_donors(base_solver, *queries.answered(), config.donors, device, keep=tuple(kept))
    ensemble = [*kept, *named]
    # what the next generation learned from: the card's hardened_on (its training block keeps only how)
    hardened_on = {"answers": list(batch_keys), "data": None if data is None else Path(data).name,
                   "pools": queries.pools}
    # the farm's move: the next generation's family, from the share of each family the bot read
    # a card naming no family made its colour pools with the colour default (farm.core.families.DEFAULT_FAMILIES)
    mode = "RGB" if any(scheme_mode(name) == "RGB" for name in targets) else "L"
    move = choose_family(card_family(base_solver.card, mode), queries.families, queries.solved.tolist(),
                         earlier=evidence(base_solver.card), mode=mode)
    # copies are published as they are made: a dry run (publish off) hardens none
    hardened = _anticipate(store, parent, base_solver, move, targets, config) if publish else None
    result = {"base": parent, "version": None, "published": False, "promoted": False, "reason": None,
              "best_step": best_step, "steps_run": history[-1]["step"] if history else 0,
              "queries": {"train": len(train_answers), "holdout": len(held_answers),
                          "holdout_mistakes": len(held_mistakes[1]), "skipped": queries.skipped,
                          "solved_left_out": int((~queries.holdout & queries.learnable).sum()) - len(train_answers)},
              "hardened_on": hardened_on, "family": move, "hardened": hardened, "target_schemes": targets,
              "before": before, "after": after,
              "clean_drop": drops,
              "ensemble": ensemble, "donors_named": named, "donors_kept": kept, "resemblance": resembles,
              # no step agreed better, yet the answers named donors: the base's weights publish with them
              "weights": "trained" if best_step else "unchanged",
              "tolerance": config.tolerance, "guard_floor": solver.card["guard_floor"], "history": history,
              "seconds": round(time.perf_counter() - started, 1)}
    worst = max(drops, key=drops.get, default=None)
    # nothing learned and the family stays: nothing worth keeping. A new family is worth a version even with the
    # base's weights and donors: it is what the next pools are made of
    if best_step == 0 and not named and not hardened and move["name"] == move["from"]:
        closest = _closest_miss(history, before["agreement"], result["guard_floor"])
        donors = ", and no zoo donor fails where the attacker failed more than the substitute" if config.donors else ""
        raise FinetuneRefused(
            f"no gain: no weights agreed better with the held-out answers ({before['agreement']:.1%}) while keeping "
            f"clean accuracy within half the tolerance{closest}{donors}; nothing was published. More replay "
            f"(--replay), a smaller --lr or more answers may help", result)
    weights = weights_bytes(model)
    card = _card(model, weights, base_solver, parent, config, command, result)
    if worst is not None and drops[worst] > config.tolerance:
        reason = (f"guard: clean accuracy on {worst} fell from {before['clean'][worst]:.1%} to "
                  f"{after['clean'][worst]:.1%} ({drops[worst]:.1%} > tolerance {config.tolerance:.1%})")
        if publish:
            result.update(published=True, reason=reason, version=_keep_refused(store, weights, card, parent, reason))
        fate = (f"kept as {result['version']}, unpromoted and marked refused (`farm checkpoint show {result['version']}`"
                f"; `farm checkpoint promote --force {result['version']}` uses it anyway)" if publish
                else "nothing was published")
        if move["name"] == move["from"] and not hardened:
            raise FinetuneRefused(f"{reason}; {fate}. Use more replay (--replay), a smaller --lr, or more answers",
                                  result)
        # a new family or new hardened copies do not wait for weights the guard refused: the base's weights carry them
        log.warning("fine-tune: %s; %s. The move (family %s%s) is published with %s's weights", reason, fate,
                    move["name"], ", hardened copies" if hardened else "", parent)
        result.update(weights_refused={"reason": reason, "version": result["version"]}, version=None,
                      published=False, reason=None, best_step=0, weights="unchanged", after=before,
                      clean_drop={name: 0.0 for name in targets})
        model = base_solver.model
        weights = weights_bytes(model)
        card = _card(model, weights, base_solver, parent, config, command, result)
    if publish:
        result.update(published=True, **_publish(store, weights, card, parent, promote))
    return result


def _anticipate(store: Store, parent: str, base_solver: Solver, move: dict, targets: list[str],
                config: FinetuneConfig) -> dict | None:
    """Hardened copies for the next generation (farm.ops.anticipation) once the bot learned the current family.

    They are adapted on the farm's own pools of every family the bot was seen to learn (this batch
    and the lineage's evidence); None when anticipation is off or nothing is learned yet.
    """
    families = learned(move)
    if not config.anticipate or not targets or move["from"] not in families:
        return None
    from farm.ops.anticipation import harden  # it adapts as farm.ops.attacker does, which fits with this module
    from farm.ops.attacker import OPERATOR

    recipe = replace(OPERATOR, steps=config.anticipate_steps, replay_count=config.replay_count, workers=config.workers,
                     guard_count=config.guard_count, seed=config.seed)
    return harden(store, parent, base_solver, families, config.anticipate, targets[0], recipe)


def _card(model, weights: bytes, base_solver: Solver, parent: str, config: FinetuneConfig, command: str | None,
          result: dict) -> dict:
    """The new version's card: what it was hardened on, how it was trained (to repeat the run), what it measured.

    The registry adds its generation (the base's + 1) when it publishes it.
    """
    before, after = result["before"], result["after"]
    return build_card(model, base_solver.charset, weights,
                      schemes=base_solver.card.get("schemes"), ensemble=result["ensemble"],
                      hardened_on=result["hardened_on"], family=result["family"],
                      **({"hardened": result["hardened"]} if result["hardened"] else {}),
                      training={"finetune": {"config": asdict(config), "queries": result["queries"],
                                             "best_step": result["best_step"], "seconds": result["seconds"]},
                                "command": command or f"farm finetune --base {parent}",
                                "torch": torch.__version__},
                      metrics={"accuracy": after["clean"], "accuracy_count": config.guard_count,
                               "agreement": {"before": before["agreement"], "after": after["agreement"],
                                             "holdout": result["queries"]["holdout"],
                                             "on_mistakes": {"before": before["agreement_on_mistakes"],
                                                             "after": after["agreement_on_mistakes"],
                                                             "holdout": result["queries"]["holdout_mistakes"]}},
                               "accuracy_before": before["clean"], "resemblance": result["resemblance"]},
                      created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _keep_refused(store: Store, weights: bytes, card: dict, parent: str, reason: str) -> str:
    """Store a model the guard refused, for inspection: unpromoted, its card `refused` (promoted only by force)."""
    return registry.publish(store, weights, {**card, "refused": reason}, parent=parent, make_current=False,
                            allow_charset_change=True, held_back="refused by the fine-tune guard")


def _publish(store: Store, weights: bytes, card: dict, parent: str, promote: bool) -> dict:
    """Publish on top of `parent`; a lost race for CURRENT (or `promote` off) keeps the result unpromoted.

    Returns {version, promoted, reason}. The card is the base's charset, accepted when the base
    was published: a change of CURRENT's alphabet meanwhile is checked when it is promoted.
    """
    if not promote:
        reason = "published unpromoted on request (--no-promote)"
    else:
        try:
            return {"version": registry.publish(store, weights, card, parent=parent), "promoted": True,
                    "reason": None}
        except registry.SwitchLostError as e:  # stored already: CURRENT moved between the check and the switch
            log.warning("fine-tune kept %s unpromoted: %s", e.version, e)
            return {"version": e.version, "promoted": False, "reason": str(e)}
        except ConflictError as e:
            now = (registry.current(store) or {}).get("version")
            reason = f"CURRENT moved from {parent} to {now} during the fine-tune" if now != parent else str(e)
    version = registry.publish(store, weights, card, parent=parent, make_current=False, allow_charset_change=True,
                               held_back=reason)
    if promote:
        log.warning("fine-tune kept %s unpromoted: %s", version, reason)
    return {"version": version, "promoted": False, "reason": reason}


def _closest_miss(history: list[dict], before: float, floor: float | None) -> str:
    """Why no weights qualified: the best agreement reached and its clean reading under the guard's floor."""
    closest = max(history, key=lambda h: h["agreement"], default=None)
    if closest is None or closest["agreement"] <= before or floor is None:
        return ""  # agreement never rose: nothing came close
    return (f" (the best, {closest['agreement']:.1%} at step {closest['step']}, read {closest['clean']:.1%} of the "
            f"guard's clean captchas, under the floor {floor:.1%})")


def resolve_batches(store: Store, names: list[str]) -> list[str]:
    """Batch names or keys (or `all`) -> answer keys, each checked to exist."""
    stored = batches(store)
    if names == ["all"] or not names:
        if not stored:
            raise AnswersError(f"answers: {store.url} holds no answer batch; ingest some with `farm answers ingest`")
        return stored
    keys = []
    for name in names:
        key = name if name.startswith("answers/") else f"answers/{name.removesuffix('.jsonl')}.jsonl"
        if key not in stored:
            raise AnswersError(f"answers: batch {name!r} is not in {store.url}; see `farm answers list`")
        keys.append(key)
    return keys

