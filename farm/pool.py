"""Pools: shards of adversarial captchas written in the storage layout platforms read.

pools/<pool>/images/<id>.png   public; id = HMAC(secret, pool/shard/index), reveals nothing
pools/<pool>/keys/<shard>.jsonl private; answers and measures; written last = shard complete
pools/<pool>/manifest.json     spec, substitute, counts, shards; no answers; changed only by compare-and-swap
pools/<pool>/claims/<shard>.json private; who computes the shard (farm.claims)

Captcha `index` of a pool is rendered from a seed keyed by FARM_SECRET (farm.seeds), so with the
secret every method perturbs the same clean captchas index by index and a re-run shard writes
identical bytes, and without it nobody can render them again.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone

import numpy as np
import torch
from PIL import Image

from farm.attacks import METHODS, NORMS, make_attack
from farm.charset import Charset
from farm.checkpoint import Solver
from farm.claims import CLAIM_SECONDS, claim_shard, release_claim
from farm import config
from farm.exceptions import ConflictError, PoolError
from farm.measures import glyph_region, measure
from farm.schemes import get_scheme
from farm.seeds import KEYED, Seeds, derivation
from farm.store import Store, jsonl_records

__all__ = ["PoolSpec", "CleanShard", "captcha_id", "render_shard", "generate_shard", "shard_complete",
           "write_manifest", "update_manifest", "read_manifest", "take_shard", "compute_shard", "release_shard", "read_keys", "encode_png", "decode_png",
           "image_key", "pool_names", "complete_shards", "list_pools", "pool_charset", "read_shard_keys",
           "answer_matches", "pool_stats", "export_pool", "manifest_key", "pool_images", "pending_shards",
           "AttackedShard", "attack_shard", "write_shard", "clean_captchas", "spec_charset", "check_reads", "FOLDER"]

MASKS = ("full", "background", "glyph", "strokes")
STROKES = 8  # curves per captcha of the strokes mask
FOLDER = "folder"  # the scheme of a pool perturbing a platform's own captchas
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# A pool is refilled as it is served (farm.refill), so it never needs to hold years of traffic;
# 10^8 captchas are already ~350 GB of PNGs and keys, and a count beyond it is a typo.
MAX_COUNT = 10**8
# A shard is rendered and attacked whole, ~30 bytes a pixel (uint8 images and masks, float32 copies
# in the attack): 8192 captchas of 192x64 take ~3 GB. The benchmarks' largest shard is 5000.
MAX_SHARD_SIZE = 8192
# The manifest and a job list shards, and `farm generate` the pending ones: a million entries is
# ~80 MB of JSON. At the default shard size (256) a pool of MAX_COUNT has 390 625 shards.
MAX_SHARDS = 10**6
# Pixels kept clear around the glyphs (background mask, and the glyph budget's region). Measured on
# 20 classic captchas: 77% of the image is left to perturb at 1, 38% at 8, 14.5% at 16; beyond that
# there is next to nothing off the glyphs, and the dilation only grows slower.
MAX_MARGIN = 16
# JSON types a field of a spec accepts (a task's spec is JSON): a string where a number belongs is refused by name
_FIELD_TYPES = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
                "str": ((str,), "text")}
# each conflict means another writer's update landed, so a writer retries at most once per other
# writer's update; 10 outlasts a burst of beat processes, operators and finishing jobs at once
MANIFEST_ATTEMPTS = 10
MANIFEST_BACKOFF_SECONDS = 0.05  # the first retry's longest wait; doubled each time, with jitter, up to 1 s

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSpec:
    """What a pool holds and how it was perturbed. Stored in the manifest; equal specs give equal bytes."""

    count: int
    scheme: str = "classic"
    method: str = "iterative"
    norm: str = "linf"
    eps: float = 8 / 255
    alpha: float | None = None
    steps: int = 10
    mask: str = "background"  # full, background, glyph, strokes, or the path of a PNG (white = may change)
    margin: int = 1  # background mask: pixels this close to a glyph stay untouched
    seed: int = 0
    shard_size: int = 256
    random_start: bool = False
    smoothing: float = 0.0  # transfer switches, see farm.attacks.base.Attack
    diversity: float = 0.0
    decay: float = 1.0  # momentum and robust only
    eps_glyph: float | None = None  # linf: a smaller budget on the glyphs (dilated by margin) than off them
    ensemble: tuple[str, ...] = ()  # zoo donors attacked together with the substitute
    early_stop: bool = True  # stop a captcha once the substitute misreads it; off: spend every step (transfers)
    source: str | None = None  # a platform's own captchas (farm.folder) instead of a scheme; scheme is then "folder"

    def validate(self) -> "PoolSpec":
        """The spec, or ValueError naming the first field out of range: nothing is written before this passes."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ValueError(f"seed (--seed): must be a whole number from 0 to 2**64 - 1, a 64-bit seed for numpy's "
                             f"SeedSequence (got {self.seed!r})")
        self._check_types()
        if not 0 < self.count <= MAX_COUNT:
            raise ValueError(f"count: must be 1 to {MAX_COUNT:_} a pool (got {self.count:_}); a pool is "
                             f"refilled as it is served (`farm pool refill`), so it never needs more")
        if not 0 < self.shard_size <= MAX_SHARD_SIZE:
            raise ValueError(f"shard-size: must be 1 to {MAX_SHARD_SIZE} (got {self.shard_size}); a shard is "
                             f"rendered and attacked in memory at once")
        if self.shards > MAX_SHARDS:
            raise ValueError(f"shard-size: {self.count:_} captchas in shards of {self.shard_size} are "
                             f"{self.shards:_} shards, over the limit of {MAX_SHARDS:_}; use --shard-size "
                             f"{math.ceil(self.count / MAX_SHARDS)} or more")
        if not 0 <= self.margin <= MAX_MARGIN:
            raise ValueError(f"margin: must be 0 to {MAX_MARGIN} pixels (got {self.margin}); at {MAX_MARGIN} "
                             f"little of a captcha is left off the glyphs to perturb")
        if self.source is None:
            get_scheme(self.scheme)
        elif self.scheme != FOLDER:
            raise ValueError(f"scheme: a pool of a source folder has scheme {FOLDER!r} (got {self.scheme!r})")
        elif self.mask not in MASKS:
            raise ValueError("mask: a pool of a source folder takes full, background, glyph or strokes "
                             "(give glyph masks as <image>.mask.png in the folder)")
        if self.method != "none" and self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; known: none, {', '.join(METHODS)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm: must be one of {', '.join(NORMS)} (got {self.norm!r})")
        if self.method != "none":
            METHODS[self.method].check(**self.attack_settings())  # the attack owns its settings' ranges
        if self.mask not in MASKS:
            self.user_mask()  # raises when unreadable or of the wrong size
        if self.eps_glyph is not None and (self.norm != "linf" or not 0 <= self.eps_glyph <= self.eps):
            raise ValueError(f"eps-glyph: needs norm linf and 0 <= eps-glyph <= eps (got {self.eps_glyph})")
        if self.ensemble:
            from farm.zoo import member
            for name in self.ensemble:
                member(name)
        return self

    def _check_types(self) -> None:
        for f in fields(self):
            value, (kinds, what) = getattr(self, f.name), _FIELD_TYPES.get(f.type.removesuffix(" | None"), (None, ""))
            if kinds is None or (value is None and f.type.endswith(" | None")):
                continue
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"{f.name.replace('_', '-')}: must be {what} (got {value!r})")

    def attack_settings(self) -> dict:
        """The settings of this spec that the attack of `method` checks and takes (perturb and validate read them)."""
        settings = {"eps": self.eps, "norm": self.norm, "alpha": self.alpha, "steps": self.steps,
                    "smoothing": self.smoothing, "diversity": self.diversity}
        if self.method in ("momentum", "robust"):
            settings["decay"] = self.decay
        return settings

    @property
    def shards(self) -> int:
        return math.ceil(self.count / self.shard_size)

    def indices(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.count, (shard + 1) * self.shard_size))

    def user_mask(self) -> np.ndarray:
        scheme = get_scheme(self.scheme)
        try:
            image = Image.open(self.mask).convert("L")
        except (OSError, ValueError) as e:
            raise ValueError(f"mask: {self.mask!r} is neither full, background, glyph nor a readable PNG ({e})") from e
        if image.size != (scheme.width, scheme.height):
            raise ValueError(f"mask: {self.mask} is {image.size[0]}x{image.size[1]}, "
                             f"the {scheme.name} scheme draws {scheme.width}x{scheme.height}")
        return np.asarray(image) > 127

    def to_dict(self) -> dict:
        """JSON-ready: the manifest holds exactly this."""
        data = asdict(self)
        data["ensemble"] = list(self.ensemble)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PoolSpec":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "ensemble" in values:
            values["ensemble"] = tuple(values["ensemble"])
        return cls(**values)

    def solvers(self, substitute: Solver, device: str = "cpu") -> list[Solver]:
        """The substitute first, then the ensemble's donors and those its card names (held-out solvers are refused).

        A fine-tune names the donors whose failures match the attackers' (farm.resemblance), so
        every pool made with that version is aimed at them too.
        """
        from farm.zoo import card_ensemble, load_donor
        names = dict.fromkeys([*self.ensemble, *card_ensemble(substitute.card)])
        return [substitute] + [load_donor(name, device) for name in names]


def check_pool_name(pool: str) -> str:
    if not pool or not set(pool) <= _NAME_CHARS or pool.startswith("."):
        raise ValueError(f"pool: {pool!r} must be letters, digits, '-', '_' or '.', not starting with '.'")
    return pool


def captcha_id(secret: bytes, pool: str, shard: int, index: int) -> str:
    """Random-looking and stable: an HMAC of the position, never of the answer."""
    return hmac.new(secret, f"{pool}/{shard}/{index}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class CleanShard:
    """Clean captchas of a shard. Shape: images and glyphs (N, H, W), allowed (N, H, W) bool."""

    indices: list[int]
    texts: list[str]
    images: np.ndarray
    glyphs: np.ndarray
    allowed: np.ndarray
    seconds: float = 0.0


def render_shard(spec: PoolSpec, shard: int, seeds: Seeds, store: Store | None = None) -> CleanShard:
    """Render (or, for a source pool, read from `store`) a shard's clean captchas and where the attack may act."""
    started = time.perf_counter()
    indices = list(spec.indices(shard))
    images, glyphs, texts = clean_captchas(spec, indices, seeds, store)
    if spec.mask == "full":
        allowed = np.ones_like(glyphs)
    elif spec.mask == "glyph":
        allowed = glyphs.copy()
    elif spec.mask == "background":
        allowed = ~np.stack([glyph_region(g, spec.margin) for g in glyphs])
    elif spec.mask == "strokes":
        allowed = np.stack([stroke_mask(g.shape, seeds.captcha(spec.seed, i)) & ~glyph_region(g, spec.margin)
                            for i, g in zip(indices, glyphs)])
    else:
        allowed = np.broadcast_to(spec.user_mask(), glyphs.shape).copy()
    return CleanShard(indices, texts, images, glyphs, allowed, time.perf_counter() - started)


def clean_captchas(spec: PoolSpec, indices: list[int], seeds: Seeds, store: Store | None = None):
    """(images uint8 (N, H, W), glyph masks (N, H, W), answers) of a pool's clean captchas `indices`."""
    if spec.source is not None:
        if store is None:
            raise ValueError("store: a pool of a source folder reads its captchas from the store")
        from farm.folder import source_chunk
        return source_chunk(store, spec.source, indices)
    scheme = get_scheme(spec.scheme)
    captchas = [scheme.sample(seeds.captcha(spec.seed, i)) for i in indices]
    return np.stack([c.image for c in captchas]), np.stack([c.mask for c in captchas]), [c.text for c in captchas]


def spec_charset(spec: PoolSpec, store: Store | None = None) -> Charset:
    """The alphabet and lengths of a pool's answers: its scheme's, or its source folder's."""
    if spec.source is not None:
        from farm.folder import read_source
        return Charset.from_dict(read_source(store, spec.source)["charset"])
    return get_scheme(spec.scheme).charset


def supply(spec: PoolSpec, store: Store | None = None) -> int | None:
    """The most captchas a pool can hold: its source folder's count; None for a scheme, which never runs out."""
    if spec.source is None:
        return None
    from farm.folder import read_source
    return read_source(store, spec.source)["count"]


def check_reads(solver: Solver, charset: Charset, what: str) -> None:
    """A substitute must read every character of a pool's answers: PoolError naming those it cannot."""
    missing = solver.charset.covers(charset.alphabet)
    if missing:
        raise PoolError(f"charset: {what} uses {missing!r}, which substitute {solver.version or '?'} cannot read "
                        f"(its alphabet is {solver.charset.alphabet!r}); train or choose a substitute for this "
                        f"alphabet (`farm train --alphabet ...`)")


def stroke_mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Random thin curves across the captcha, like the noise curves people already skip when reading.

    The strokes mask lets the attack change only these curves (off the glyphs), so the perturbation
    looks like more captcha noise rather than grain over the whole background.
    """
    from PIL import ImageDraw

    rng = np.random.default_rng([seed, 77])
    h, w = shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(STROKES):
        p0, p1, p2 = rng.uniform([0, 0], [w, h], size=(3, 2))
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # a quadratic Bezier curve
        draw.line([tuple(p) for p in curve], fill=255, width=int(rng.integers(2, 4)))
    return np.asarray(canvas) > 0


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8)


def keys_key(pool: str, shard: int) -> str:
    return f"pools/{pool}/keys/{shard:05d}.jsonl"


def image_key(pool: str, cid: str) -> str:
    return f"pools/{pool}/images/{cid}.png"


def manifest_key(pool: str) -> str:
    return f"pools/{pool}/manifest.json"


def shard_complete(store: Store, pool: str, shard: int) -> bool:
    return store.exists(keys_key(pool, shard))


def perturb(spec: PoolSpec, clean: CleanShard, solvers: list[Solver], shard: int, device: str = "cpu") -> np.ndarray:
    """The adversarial images of a shard as uint8 (N, H, W)."""
    if spec.method == "none":
        return clean.images.copy()
    kwargs = dict(spec.attack_settings(), random_start=spec.random_start, seed=spec.seed * 1_000_003 + shard,
                  device=device)
    if not spec.early_stop:
        kwargs["early_stop"] = False
    attack = make_attack(spec.method, solvers, **kwargs)
    x = torch.from_numpy(clean.images).unsqueeze(1).float() / 255
    budget = None
    if spec.eps_glyph is not None:
        region = np.stack([glyph_region(g, spec.margin) for g in clean.glyphs])
        budget = torch.from_numpy(np.where(region, spec.eps_glyph, spec.eps)).unsqueeze(1).float()
    adv = attack(x, clean.texts, torch.from_numpy(clean.allowed).unsqueeze(1), budget=budget)
    # round to the 8-bit grid a PNG holds; k/255 budgets stay within eps after rounding
    return adv.squeeze(1).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


@dataclass
class AttackedShard:
    """A shard's adversarial images (uint8 (N, H, W)) and the substitute's readings before and after."""

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
    return {"shard": shard, "skipped": False, "count": len(records), "bytes": written + len(keys),
            "stages": stages,
            "substitute_solved": sum(answer_matches(substitute.charset, r["answer"], r["reading"]) for r in records),
            "substitute_solved_clean": sum(answer_matches(substitute.charset, r["answer"], r["reading_clean"])
                                           for r in records),
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


def read_manifest(store: Store, pool: str) -> dict:
    try:
        return json.loads(store.get(manifest_key(pool)))
    except KeyError:
        raise PoolError(f"pool: {pool!r} does not exist in {store.url}; see `farm pool list`") from None


def update_manifest(store: Store, pool: str, change, attempts: int = MANIFEST_ATTEMPTS) -> dict:
    """Apply `change(old manifest or None) -> new manifest` as a compare-and-swap; returns what was written.

    The write is conditional on the version read (If-Match, or If-None-Match for a new pool), so
    no writer overwrites an update it did not see: on a conflict the manifest is read again and
    `change` applied to it again. `change` must therefore be a function of what it is given (and
    of the store), never of an earlier read, and applying it twice must equal applying it once
    (a write whose answer was lost is retried on top of itself). ConflictError after `attempts`.
    """
    key = manifest_key(pool)
    for attempt in range(attempts):
        try:
            data, etag = store.get_with_etag(key)
        except KeyError:
            data, etag = None, None
        old = _parse_manifest(data, pool) if data is not None else None
        new = change(old)
        body = json.dumps(new, indent=2, sort_keys=True).encode()
        try:
            if etag is None:
                store.put(key, body, if_none_match=True, content_type="application/json")
            else:
                store.put(key, body, if_match=etag, content_type="application/json")
            return new
        except ConflictError:
            log.debug("%s: changed by another writer; applying the change again (attempt %d)", key, attempt + 1)
            time.sleep(random.uniform(0, min(1.0, MANIFEST_BACKOFF_SECONDS * 2 ** attempt)))
    raise ConflictError(f"{key}: other writers changed it before each of {attempts} attempts to update it; nothing "
                        f"was lost (every write is conditional): run the command again")


def _parse_manifest(data: bytes, pool: str) -> dict:
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
            raise ValueError("not an object with a spec")
    except ValueError as e:
        raise PoolError(f"pool: {manifest_key(pool)} is unreadable ({e}); restore it from a backup or export") from e
    return manifest


def merged_spec(pool: str, old: dict, spec: PoolSpec) -> PoolSpec:
    """The spec a stored pool has after a writer asks for `spec`: the larger count; PoolError if anything else differs.

    A count only grows: a writer asking for fewer (a generate finishing while a growth was
    queued) leaves the count another writer raised.
    """
    stored = PoolSpec.from_dict(old["spec"])  # fields added since take their defaults
    fields_stored = stored.to_dict()
    differs = [k for k, v in spec.to_dict().items() if k != "count" and fields_stored.get(k) != v]
    if differs:
        raise PoolError(f"pool: {pool!r} already exists with another spec (differs in {', '.join(differs)}); "
                        f"choose a new --pool name or repeat the original arguments")
    return replace(spec, count=max(spec.count, stored.count))


def write_manifest(store: Store, pool: str, spec: PoolSpec, substitute: Solver, status: str,
                   shard_substitutes: dict[int, dict] | None = None, seeded: str = KEYED) -> dict:
    """Update the manifest with what a writer knows (update_manifest); returns it as written.

    The count is the largest any writer asked for (merged_spec); the shards and `complete` are
    read from the store; `status` is complete only when the writer says so and every shard of
    that count is complete. `shard_substitutes` ({shard: {version, sha256}}): the solver of each
    shard, kept from earlier writers for the others. `seeded`: how a new pool's captchas are
    seeded (farm.seeds); a stored pool keeps its derivation.
    """
    charset = spec_charset(spec, store).to_dict()

    def change(old: dict | None) -> dict:
        merged = spec if old is None else merged_spec(pool, old, spec)
        named = {s["shard"]: s["substitute"] for s in (old or {}).get("shards", []) if "substitute" in s}
        named.update(shard_substitutes or {})
        shards = []
        for shard in complete_shards(store, pool):
            if shard < merged.shards:
                shards.append({"shard": shard, "count": len(merged.indices(shard)), "keys": keys_key(pool, shard)})
                if shard in named:
                    shards[-1]["substitute"] = named[shard]
        done = status == "complete" and len(shards) == merged.shards
        return {"pool": pool, "spec": merged.to_dict(), "status": "complete" if done else "generating",
                "derivation": seeded if old is None else derivation(old), "charset": charset,
                "substitute": {"version": substitute.version, "sha256": substitute.sha256},
                "count": merged.count, "complete": sum(s["count"] for s in shards),
                "shards": shards, "shard_count": merged.shards,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    return update_manifest(store, pool, change)


def read_keys(store: Store, pool: str) -> list[dict]:
    """Every key record of the complete shards, in index order (private: answers inside)."""
    records = []
    for key in store.list(f"pools/{pool}/keys/"):
        records += jsonl_records(store.get(key))
    return sorted(records, key=lambda r: r["index"])


def pool_images(store: Store, pool: str, limit: int | None = None,
                manifest: dict | None = None) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(key records, clean images, adversarial images) of a pool's first captchas; images uint8 (N, H, W).

    Clean captchas are not stored: they are rendered again from the spec's seed under FARM_SECRET,
    index by index, as the manifest says they were seeded (or read from the pool's source folder).
    `manifest`: the pool's, when the caller already read it.
    """
    manifest = manifest or read_manifest(store, pool)
    spec = PoolSpec.from_dict(manifest["spec"])
    records = read_keys(store, pool)[:limit]
    if not records:
        raise PoolError(f"pool: {pool!r} has no complete shard yet")
    key = config.secret(store)
    first = records[0]
    if not hmac.compare_digest(first["id"], captcha_id(key, pool, first["shard"], first["index"])):
        raise PoolError(f"FARM_SECRET: not the secret pool {pool!r} was made with (its captcha ids disagree), so "
                        f"its clean captchas cannot be rendered again; set the farm's FARM_SECRET")
    clean = clean_captchas(spec, [r["index"] for r in records], Seeds(key, derivation(manifest)), store)[0]
    adversarial = np.stack([decode_png(store.get(image_key(pool, r["id"]))) for r in records])
    return records, clean, adversarial


def pending_shards(store: Store, pool: str, spec: PoolSpec) -> list[int]:
    """Shards of a pool still to write (one listing, not a request per shard)."""
    done = set(complete_shards(store, pool))
    return [s for s in range(spec.shards) if s not in done]


# Reading pools: what platforms and operators use. Answers come from keys/ only and never leave
# the functions that compare them (verify) or that a back end calls knowingly (read_keys, export with keys).

MAX_ANSWER_CHARS = 64  # longer input is no answer to any scheme; refuse it before normalising


def pool_names(store: Store) -> list[str]:
    return [name for name in store.list_dirs("pools") if not name.startswith(".")]


def complete_shards(store: Store, pool: str) -> list[int]:
    """Shards whose keys file exists (written last, so complete even while generation goes on)."""
    found = []
    for key in store.list(f"pools/{pool}/keys/"):
        stem = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
        if stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def list_pools(store: Store) -> list[dict]:
    """Every pool with its spec summary and how many captchas are ready (no answers)."""
    rows = []
    for name in pool_names(store):
        try:
            manifest = read_manifest(store, name)
        except PoolError:
            continue  # a folder without a manifest is not a pool (yet)
        spec = PoolSpec.from_dict(manifest["spec"])
        ready = sum(len(spec.indices(s)) for s in complete_shards(store, name) if s < spec.shards)
        rows.append({"pool": name, "status": manifest.get("status"), "count": spec.count, "complete": ready,
                     "scheme": spec.scheme, "method": spec.method, "norm": spec.norm, "eps": spec.eps,
                     "substitute": manifest.get("substitute", {}).get("version"), "updated": manifest.get("updated"),
                     "derivation": derivation(manifest)})
    return rows


def pool_charset(manifest: dict) -> Charset:
    """The charset answers of a pool are checked against (manifests before charsets: the scheme's)."""
    if "charset" in manifest:
        return Charset.from_dict(manifest["charset"])
    return get_scheme(manifest["spec"]["scheme"]).charset


def read_shard_keys(store: Store, key: str) -> list[dict]:
    return jsonl_records(store.get(key))


def answer_matches(charset, truth: str, answer) -> bool:
    """Constant-time comparison of a typed answer with the truth, after the charset's case rule."""
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    return hmac.compare_digest(charset.normalize(answer).encode(), charset.normalize(truth).encode())


def pool_stats(store: Store, pool: str) -> dict:
    """Aggregate measures of a pool's complete shards: how well it fools the substitute, at what cost."""
    manifest = read_manifest(store, pool)
    spec = PoolSpec.from_dict(manifest["spec"])
    records = read_keys(store, pool)
    n = len(records)
    charset = pool_charset(manifest)

    def solved(reading: str) -> float | None:
        return round(sum(answer_matches(charset, r["answer"], r[reading]) for r in records) / n, 4) if n else None

    def mean(name):  # None rather than Infinity, which JSON cannot hold
        value = float(np.mean([r[name] for r in records])) if n else math.nan
        return round(value, 5) if math.isfinite(value) else None
    return {"pool": pool, "status": manifest.get("status"), "spec": spec.to_dict(), "count": spec.count,
            "complete": n, "shards_complete": len({r["shard"] for r in records}), "shards": spec.shards,
            "substitutes": sorted({r["substitute"] for r in records}),
            "substitute_accuracy_clean": solved("reading_clean"), "substitute_accuracy_adversarial": solved("reading"),
            "mean_ssim": mean("ssim"), "min_ssim": round(min(r["ssim"] for r in records), 5) if n else None,
            "mean_psnr": mean("psnr"), "mean_linf": mean("linf"), "mean_l2": mean("l2"),
            "mean_changed": mean("changed"), "mean_glyph_changed": mean("glyph_changed")}


EXPORT_THREADS = 8  # object stores answer one GET at a time per connection; a few in flight hide the latency


def export_pool(store: Store, pool: str, dest: Store, with_keys: bool = False) -> dict:
    """Copy a pool's complete shards into another store in the same layout (images, manifest; keys on request)."""
    from concurrent.futures import ThreadPoolExecutor

    manifest = read_manifest(store, pool)
    shard_keys = [keys_key(pool, s) for s in complete_shards(store, pool)]
    keys_data = {key: store.get(key) for key in shard_keys}
    ids = [record["id"] for data in keys_data.values() for record in jsonl_records(data)]

    def copy(cid: str) -> int:
        data = store.get(image_key(pool, cid))
        dest.put(image_key(pool, cid), data, content_type="image/png")
        return len(data)

    with ThreadPoolExecutor(EXPORT_THREADS) as pool_threads:
        written = sum(pool_threads.map(copy, ids))
    if with_keys:
        for key, data in keys_data.items():
            dest.put(key, data, content_type="application/x-ndjson")
    dest.put(manifest_key(pool), json.dumps(manifest, indent=2, sort_keys=True).encode(),
             content_type="application/json")
    return {"pool": pool, "to": dest.url, "images": len(ids), "bytes": written, "keys": with_keys}
