"""Where a pool's clean captchas come from: its scheme, drawn again from seeds, or its source folder in the store.

Apart from farm.storage.pools so that the manifest (which records a pool's charset) and the pools
(which read manifests) need not import each other.
"""

from __future__ import annotations

import numpy as np

from farm.core.charset import Charset
from farm.core.schemes import get_scheme
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.storage.folder import read_source, source_chunk, source_mode
from farm.storage.store import Store

__all__ = ["clean_captchas", "spec_charset", "spec_mode", "supply"]


def clean_captchas(spec: PoolSpec, indices: list[int], seeds: Seeds, store: Store | None = None):
    """(images uint8 (N, H, W), glyph masks (N, H, W), answers) of a pool's clean captchas `indices`."""
    if spec.source is not None:
        if store is None:
            raise ValueError("store: a pool of a source folder reads its captchas from the store")
        return source_chunk(store, spec.source, indices)
    scheme = get_scheme(spec.scheme)
    captchas = [scheme.sample(seeds.captcha(spec.seed, i)) for i in indices]
    return np.stack([c.image for c in captchas]), np.stack([c.mask for c in captchas]), [c.text for c in captchas]


def spec_charset(spec: PoolSpec, store: Store | None = None) -> Charset:
    """The alphabet and lengths of a pool's answers: its scheme's, or its source folder's."""
    if spec.source is not None:
        return Charset.from_dict(read_source(store, spec.source)["charset"])
    return get_scheme(spec.scheme).charset


def spec_mode(spec: PoolSpec, store: Store | None = None) -> str:
    """"RGB" when a pool's clean captchas are in colour, else "L": its scheme's, or its source folder's."""
    return source_mode(store, spec.source) if spec.source is not None else get_scheme(spec.scheme).mode


def supply(spec: PoolSpec, store: Store | None = None) -> int | None:
    """The most captchas a pool can hold: its source folder's count; None for a scheme, which never runs out."""
    if spec.source is None:
        return None
    return read_source(store, spec.source)["count"]
