"""One shard of a pool: render its clean captchas, perturb them, write images and then keys.

Captcha `index` of a pool is rendered from a seed keyed by FARM_SECRET (farm.core.seeds), so with
the secret every method perturbs the same clean captchas index by index and a re-run shard writes
identical bytes, and without it nobody can render them again. The keys file is written last: its
existence marks the shard complete, whoever wrote it and however often it was tried.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from farm.core import masks
from farm.core.attacks.methods import METHODS, make_attack
from farm.core.charset import Charset, answer_matches
from farm.core.checkpoint import Solver
from farm.core.identity import RIVALS, rivals
from farm.core.measures import measure
from farm.core.model import to_arrays, to_planes, to_tensor
from farm.core.schemes import get_scheme
from farm.core.seeds import UNKEYED, Seeds
from farm.core.spec import PoolSpec
from farm.core.zoo import card_ensemble
from farm.core.zoo_loading import load_donor
from farm.exceptions import PoolError
from farm.storage.claims import CLAIM_SECONDS, claim_shard, release_claim
from farm.storage.layout import captcha_id, encode_png, image_key, keys_key, shard_complete
from farm.storage.pools import clean_captchas
from farm.storage.store import Store

__all__ = ["CleanShard", "AttackedShard", "attack_solvers", "render_shard", "glyph_shapes", "check_reads", "perturb",
           "attack_shard", "write_shard", "shard_outcome", "take_shard", "release_shard", "compute_shard", "generate_shard"]


def attack_solvers(spec: PoolSpec, substitute: Solver, device: str = "cpu") -> list[Solver]:
    """The substitute first, then the spec's donors and those its card names (held-out solvers are refused), then
    its hardened copies.

    A fine-tune names the donors whose failures match the attackers' (farm.ops.resemblance), so
    every pool made with that version is aimed at them too; its anticipation, copies adapted on
    the farm's own pools as the bot adapts (farm.ops.anticipation).
    """
    return ([substitute] + [load_donor(name, device) for name in donor_names(spec, substitute.card)]
            + [c.to(device) for c in substitute.companions])


def donor_names(spec: PoolSpec, card: dict) -> list[str]:
    """The zoo donors a pool of `spec` is aimed at beside the substitute whose card is `card`: the spec's, then the
    card's (farm.core.zoo.card_ensemble), each once."""
    return list(dict.fromkeys([*spec.ensemble, *card_ensemble(card)]))


def copy_versions(card: dict) -> list[str]:
    """The versions of the hardened copies a substitute's card names (farm.ops.anticipation), aimed at after its
    donors."""
    hardened = card.get("hardened")
    copies = hardened.get("copies") if isinstance(hardened, dict) else None
    return [c.get("version") for c in copies if isinstance(c, dict)] if isinstance(copies, list) else []


@dataclass
class CleanShard:
    """Clean captchas of a shard. Shape: images uint8 (N, H, W) or (N, H, W, 3); glyphs, allowed bool (N, H, W);
    shapes bool (N, L, 1 + RIVALS, H, W) for a warp (glyph_shapes), else None; attack_seed: the seed of its attack's
    draws (Seeds.attack), None for a shard made up of others' captchas (the spec's public seed then)."""

    indices: list[int]
    texts: list[str]
    images: np.ndarray
    glyphs: np.ndarray
    allowed: np.ndarray
    seconds: float = 0.0
    shapes: np.ndarray | None = None
    attack_seed: int | None = None


def render_shard(spec: PoolSpec, shard: int, seeds: Seeds, store: Store | None = None) -> CleanShard:
    """Render (or, for a source pool, read from `store`) a shard's clean captchas and where the attack may act."""
    started = time.perf_counter()
    indices = list(spec.indices(shard))
    images, glyphs, texts = clean_captchas(spec, indices, seeds, store)
    return CleanShard(indices, texts, images, glyphs, masks.allowed(spec, glyphs, indices, seeds),
                      time.perf_counter() - started, glyph_shapes(spec, indices, texts, seeds),
                      seeds.attack(spec.seed, shard))


def glyph_shapes(spec: PoolSpec, indices: list[int], texts: list[str], seeds: Seeds) -> np.ndarray | None:
    """For a warp's pool (a method that moves glyphs) of a scheme that draws them: each glyph as its own character
    and its nearest rivals, in its pose (farm.core.identity.rivals), (N, L, 1 + RIVALS, H, W) bool, a shorter
    text's slots empty. None otherwise (a source folder's captchas, or a scheme that cannot draw them)."""
    if spec.source is not None or not getattr(METHODS.get(spec.method), "moves_glyphs", False):
        return None
    scheme = get_scheme(spec.scheme)
    drawn = [scheme.shapes(text, seeds.captcha(spec.seed, i)) for i, text in zip(indices, texts)]
    if not drawn or any(d is None for d in drawn):
        return None
    out = np.zeros((len(texts), max(map(len, texts)), 1 + RIVALS, scheme.height, scheme.width), dtype=bool)
    for k, (shapes, text) in enumerate(zip(drawn, texts)):
        out[k, :len(text)] = rivals(shapes, text, scheme.alphabet)
    return out


def check_reads(solver: Solver, charset: Charset, what: str) -> None:
    """A substitute must read every character of a pool's answers: PoolError naming those it cannot."""
    missing = solver.charset.covers(charset.alphabet)
    if missing:
        raise PoolError(f"charset: {what} uses {missing!r}, which substitute {solver.version or '?'} cannot read "
                        f"(its alphabet is {solver.charset.alphabet!r}); train or choose a substitute for this "
                        f"alphabet (`farm train --alphabet ...`)")


def perturb(spec: PoolSpec, clean: CleanShard, solvers: list[Solver], shard: int, device: str = "cpu",
            start: np.ndarray | None = None) -> np.ndarray:
    """The adversarial images of a shard, uint8 as the clean ones ((N, H, W) or (N, H, W, 3)); from `start` if given.

    A colour captcha's budgets are per channel: each of R, G, B moves at most eps (or the glyph budget).
    """
    if spec.method == "none":
        return clean.images.copy()
    seed = clean.attack_seed if clean.attack_seed is not None else Seeds(b"", UNKEYED).attack(spec.seed, shard)
    attack = make_attack(spec.method, solvers, **spec.attack_settings(), seed=seed, device=device)
    budget = masks.glyph_budget(spec, clean.glyphs)
    shapes = {} if clean.shapes is None else {"shapes": torch.from_numpy(clean.shapes)}
    adv = attack(to_tensor(clean.images), clean.texts, to_planes(clean.allowed),
                 budget=None if budget is None else to_planes(budget).float(), glyphs=to_planes(clean.glyphs),
                 start=None if start is None else to_tensor(start), **shapes)
    # round to the 8-bit grid a PNG holds; k/255 budgets stay within eps after rounding
    return to_arrays(adv)


@dataclass
class AttackedShard:
    """A shard's adversarial images (uint8, shaped as the clean ones) and the substitute's readings before and after."""

    adversarial: np.ndarray
    readings: list[str]
    clean_readings: list[str]
    seconds: float


def attack_shard(spec: PoolSpec, clean: CleanShard, solvers: list[Solver], shard: int,
                 device: str = "cpu") -> AttackedShard:
    """The compute-bound half of a shard: perturb, then read clean and adversarial captchas."""
    started = time.perf_counter()
    adversarial = perturb(spec, clean, solvers, shard, device)
    readings = solvers[0].read(list(adversarial))
    clean_readings = solvers[0].read(list(clean.images))
    return AttackedShard(adversarial, readings, clean_readings, time.perf_counter() - started)


def write_shard(store: Store, pool: str, shard: int, spec: PoolSpec, clean: CleanShard, attacked: AttackedShard,
                substitute: Solver, secret: bytes) -> dict:
    """The I/O half of a shard: encode and measure, write images, then keys (last: the shard is complete)."""
    stages = {"render": clean.seconds, "attack": attacked.seconds}
    started = time.perf_counter()
    records, blobs = [], []
    for k, index in enumerate(clean.indices):
        cid = captcha_id(secret, pool, shard, index)
        blobs.append((image_key(pool, cid), encode_png(attacked.adversarial[k])))
        records.append({"id": cid, "shard": shard, "index": index, "answer": clean.texts[k], "scheme": spec.scheme,
                        "method": spec.method, "substitute": substitute.version,
                        "substitute_sha256": substitute.sha256, "reading_clean": attacked.clean_readings[k],
                        "reading": attacked.readings[k],
                        **measure(clean.images[k], attacked.adversarial[k], clean.glyphs[k])})
    stages["encode"] = time.perf_counter() - started
    started = time.perf_counter()
    written = 0
    for key, data in blobs:
        store.put(key, data, content_type="image/png")
        written += len(data)
    keys = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    store.put(keys_key(pool, shard), keys, content_type="application/x-ndjson")  # last: marks the shard complete
    stages["store"] = time.perf_counter() - started
    return {"shard": shard, "skipped": False, "bytes": written + len(keys), "stages": stages,
            **shard_outcome(records, substitute.charset)}


def shard_outcome(records: list[dict], charset: Charset) -> dict:
    """What a job reports of a written shard, from its key records: how the substitute read it, its quality.

    Both runners report through it (in-process from the records just written, the farm's from the
    keys file), so their summaries count alike.
    """
    first = records[0]
    return {"count": len(records), "substitute": {"version": first["substitute"], "sha256": first["substitute_sha256"]},
            "substitute_solved": sum(answer_matches(charset, r["answer"], r["reading"]) for r in records),
            "substitute_solved_clean": sum(answer_matches(charset, r["answer"], r["reading_clean"]) for r in records),
            "ssim": float(np.mean([r["ssim"] for r in records])), "linf": float(np.mean([r["linf"] for r in records]))}


def take_shard(store: Store, pool: str, shard: int, spec: PoolSpec, claim_seconds: float = CLAIM_SECONDS) -> dict:
    """Whether this thread computes a shard: `skipped` False when it holds the shard's claim now.

    `claim`: claimed or taken_over (compute it, then release_shard), held (another process
    does: `held_by`, `until`), or None (complete already). The keys file is checked again once
    claimed: a holder that finished just before its claim was taken or deleted wrote it.
    """
    result = {"shard": shard, "skipped": True, "count": len(spec.indices(shard)), "claim": None}
    if shard_complete(store, pool, shard):
        return result
    claim = claim_shard(store, pool, shard, claim_seconds)
    if not claim.ours:
        return {**result, "claim": "held", "held_by": claim.holder.get("worker"), "until": claim.expires}
    taken = {**result, "skipped": False, "claim": claim.result, "claim_etag": claim.etag}
    if shard_complete(store, pool, shard):
        release_shard(store, pool, taken)
        return result
    return taken


def release_shard(store: Store, pool: str, taken: dict) -> None:
    """Give up the claim take_shard made (the shard is written, or failed), unless another process took it over."""
    release_claim(store, pool, taken["shard"], taken.get("claim_etag"))


def compute_shard(store: Store, pool: str, shard: int, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                  clean: CleanShard | None = None, device: str = "cpu") -> dict:
    """Render, attack and write one shard whose claim the caller holds (take_shard). Returns counts and stage seconds."""
    clean = clean or render_shard(spec, shard, Seeds(secret), store)
    attacked = attack_shard(spec, clean, solvers, shard, device)
    return write_shard(store, pool, shard, spec, clean, attacked, solvers[0], secret)


def generate_shard(store: Store, pool: str, shard: int, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                   clean: CleanShard | None = None, device: str = "cpu", claim_seconds: float = CLAIM_SECONDS) -> dict:
    """Write one shard (images, then keys) unless it is complete or another process holds it (take_shard)."""
    taken = take_shard(store, pool, shard, spec, claim_seconds)
    if taken["skipped"]:
        return taken
    try:
        return {**compute_shard(store, pool, shard, spec, solvers, secret, clean, device), "claim": taken["claim"]}
    finally:
        release_shard(store, pool, taken)
