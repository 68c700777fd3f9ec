"""The storage layout of pools, a contract with the platforms that read them (docs/architecture.md).

pools/<pool>/images/<id>.png     public; id = HMAC(secret, pool/shard/index), reveals nothing
pools/<pool>/keys/<shard>.jsonl  private; answers and measures; written last = shard complete
pools/<pool>/manifest.json       spec, substitute, counts, shards; no answers (farm.storage.manifest)
pools/<pool>/claims/<shard>.json private; who computes the shard (farm.storage.claims)
"""

from __future__ import annotations

import hashlib
import hmac
import io

import numpy as np
from PIL import Image

from farm.storage.store import Store
from farm.exceptions import SettingError

__all__ = ["check_pool_name", "captcha_id", "keys_key", "image_key", "manifest_key", "encode_png", "decode_png",
           "pixels",
           "shard_complete"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_pool_name(pool: str) -> str:
    if not pool or not set(pool) <= _NAME_CHARS or pool.startswith("."):
        raise SettingError(f"pool: {pool!r} must be letters, digits, '-', '_' or '.', not starting with '.'")
    return pool


def captcha_id(secret: bytes, pool: str, shard: int, index: int) -> str:
    """Random-looking and stable: an HMAC of the position, never of the answer."""
    return hmac.new(secret, f"{pool}/{shard}/{index}".encode(), hashlib.sha256).hexdigest()[:32]


def keys_key(pool: str, shard: int) -> str:
    return f"pools/{pool}/keys/{shard:05d}.jsonl"


def image_key(pool: str, cid: str) -> str:
    return f"pools/{pool}/images/{cid}.png"


def manifest_key(pool: str) -> str:
    return f"pools/{pool}/manifest.json"


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """uint8 (H, W) for a grey image, (H, W, 3) for a colour one: as the pool's scheme drew it."""
    return pixels(Image.open(io.BytesIO(data)))


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes without colour


def pixels(image: Image.Image) -> np.ndarray:
    """An opened image's pixels, keeping colour: uint8 (H, W) grey, or (H, W, 3) RGB for any colour mode."""
    return np.asarray(image.convert("L" if image.mode in GREY_MODES else "RGB"), dtype=np.uint8)


def shard_complete(store: Store, pool: str, shard: int) -> bool:
    return store.exists(keys_key(pool, shard))
