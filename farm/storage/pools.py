"""Reading pools back: their captchas, clean and adversarial, their keys, stats, and copies elsewhere.

Answers come from keys/ only and never leave the functions that compare them (verify) or that a
back end calls knowingly (read_keys, export with keys).
"""

from __future__ import annotations

import hmac
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from farm.core.charset import Charset, answer_matches
from farm.core.families import method_family
from farm.core.schemes import get_scheme
from farm.core.seeds import Seeds, derivation
from farm.core.spec import PoolSpec
from farm.exceptions import PoolError
from farm.storage import config
from farm.storage.layout import captcha_id, decode_png, image_key, keys_key, manifest_key
from farm.storage.manifest import complete_shards, read_manifest
from farm.storage.sources import clean_captchas
from farm.storage.store import Store, jsonl_records

__all__ = ["read_keys", "pool_images", "pool_names", "list_pools", "pool_family",
           "pool_charset", "read_shard_keys", "pool_stats", "export_pool"]


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


def pool_names(store: Store) -> list[str]:
    return [name for name in store.list_dirs("pools") if not name.startswith(".")]


def list_pools(store: Store) -> list[dict]:
    """Every pool with its spec summary, its substitute and generation, and how many captchas are ready (no answers).

    `generation` is None for a pool made before manifests recorded it.
    """
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
                     "substitute": manifest.get("substitute", {}).get("version"),
                     "generation": manifest.get("substitute", {}).get("generation"), "family": pool_family(manifest),
                     "updated": manifest.get("updated"),
                     "derivation": derivation(manifest)})
    return rows


def pool_family(manifest: dict) -> str | None:
    """The perturbation family of a pool: its manifest's, or for a manifest from before families its method's."""
    if "family" in manifest:
        return manifest["family"]
    return method_family((manifest.get("spec") or {}).get("method"))


def pool_charset(manifest: dict) -> Charset:
    """The charset answers of a pool are checked against (manifests before charsets: the scheme's)."""
    if "charset" in manifest:
        return Charset.from_dict(manifest["charset"])
    return get_scheme(manifest["spec"]["scheme"]).charset


def read_shard_keys(store: Store, key: str) -> list[dict]:
    return jsonl_records(store.get(key))


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
    stats = {"pool": pool, "status": manifest.get("status"), "spec": spec.to_dict(), "count": spec.count,
             "complete": n, "shards_complete": len({r["shard"] for r in records}), "shards": spec.shards,
             "substitutes": sorted({r["substitute"] for r in records}),
             "generation": manifest.get("substitute", {}).get("generation"), "family": pool_family(manifest),
             "substitute_accuracy_clean": solved("reading_clean"), "substitute_accuracy_adversarial": solved("reading"),
             "mean_ssim": mean("ssim"), "min_ssim": round(min(r["ssim"] for r in records), 5) if n else None,
             "mean_psnr": mean("psnr"), "mean_linf": mean("linf"), "mean_l2": mean("l2"),
             "mean_changed": mean("changed"), "mean_glyph_changed": mean("glyph_changed")}
    if n and all("ssim_glyph_colour" in r for r in records):  # a colour pool: its SSIM above is on luminance
        stats.update(mean_ssim_glyph=mean("ssim_glyph"), mean_ssim_glyph_colour=mean("ssim_glyph_colour"))
    return stats


EXPORT_THREADS = 8  # object stores answer one GET at a time per connection; a few in flight hide the latency


def export_pool(store: Store, pool: str, dest: Store, with_keys: bool = False) -> dict:
    """Copy a pool's complete shards into another store in the same layout (images, manifest; keys on request)."""
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
