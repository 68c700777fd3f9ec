"""A platform's own captchas: a labelled folder, checked, then kept in the store as a pool's source.

A folder holds images (png, jpg, gif, bmp, webp) and their answers, from the first of:
  labels.jsonl   one {"file": "a.png", "answer": "k3x9"} per line
  labels.csv     rows of file,answer (a header row `file,answer` is optional)
  file names     the answer is the name up to the first '_' (k3x9.png, k3x9_0017.png)
An optional `<stem>.mask.png` beside an image is its glyph mask (white = glyph); without one the
mask is estimated (Otsu threshold, the minority side is ink, specks dropped).

Imported into a store (`sources/<id>/`, private like keys/: answers inside), a folder becomes
the clean captchas of a pool: workers anywhere read it from there, chunk by chunk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from farm.core.charset import Charset
from farm.core.colour import grey_array
from farm.exceptions import DataError
from farm.storage.layout import GREY_MODES, pixels
from farm.storage.store import Store

__all__ = ["Labelled", "read_folder", "folder_mode", "estimate_glyphs", "import_source", "read_source", "source_mode",
           "source_chunk",
           "SOURCE_CHUNK", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
SOURCE_CHUNK = 256  # captchas per stored chunk: one request serves a whole shard of the default size
SHOWN = 5  # offending files named in an error; the rest are counted
# Captchas are a few thousand to a few tens of thousands of pixels; a header that declares more than this is a
# mistake or a decompression bomb (a few hundred bytes of PNG can declare gigabytes), refused before decoding
MAX_PIXELS = 1_000_000


@dataclass
class Labelled:
    """A checked folder. Shape: images uint8 (N, H, W), or (N, H, W, 3) when any is in colour; glyphs bool (N, H, W)."""

    name: str
    files: list[str]
    texts: list[str]
    images: np.ndarray
    glyphs: np.ndarray
    charset: Charset
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.images.shape[1], self.images.shape[2]

    def held_out(self, share: float, most: int | None = None) -> np.ndarray:
        """Bool (N,): captchas kept apart for validation, chosen by file name: every run holds out the same."""
        keys = [int.from_bytes(hashlib.sha256(f.encode()).digest()[:8], "big") for f in self.files]
        count = min(most or len(keys), max(1, round(share * len(keys)))) if len(keys) > 1 else 0
        held = np.zeros(len(keys), dtype=bool)
        held[sorted(range(len(keys)), key=keys.__getitem__)[:count]] = True
        return held

    def digest(self) -> str:
        """Content id: the same captchas with the same answers give the same id on any machine."""
        h = hashlib.sha256()
        for text, image, glyphs in zip(self.texts, self.images, self.glyphs):
            h.update(text.encode() + b"\0" + image.tobytes() + np.packbits(glyphs).tobytes())
        return h.hexdigest()[:24]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fail(problem: str, items: list[str], hint: str) -> None:
    shown = "; ".join(items[:SHOWN]) + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
    raise DataError(f"{problem}: {shown}. {hint}")


def _labels(folder: Path, images: list[Path]) -> dict[str, str]:
    """File name -> answer, from labels.jsonl, labels.csv or the file names."""
    jsonl, table = folder / "labels.jsonl", folder / "labels.csv"
    if jsonl.exists():
        labels, bad = {}, []
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                labels[str(record["file"])] = str(record["answer"])
            except (ValueError, KeyError, TypeError):
                bad.append(f"line {number}")
        if bad:
            _fail(f"data: {jsonl} has lines that are not {{\"file\": ..., \"answer\": ...}}", bad,
                  "Fix or remove those lines")
        return labels
    if table.exists():
        with table.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "answer"]:
            rows = rows[1:]
        bad = [f"row {i + 1}" for i, r in enumerate(rows) if len(r) < 2]
        if bad:
            _fail(f"data: {table} has rows without two columns file,answer", bad, "Fix or remove those rows")
        return {r[0].strip(): r[1].strip() for r in rows}
    return {p.name: p.stem.split("_", 1)[0] for p in images}


def _images(folder: Path) -> list[Path]:
    """The captcha images of a folder, sorted by name: its image files but the glyph masks (<image>.mask.png)."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(".mask.png"))


def read_folder(path: str | Path, charset: Charset, glyphs: bool = True) -> Labelled:
    """Read and check a labelled folder against the alphabet that will read it; DataError names what is wrong.

    `glyphs=False` (training) skips the glyph masks: all False, none read or estimated.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data: {folder} is not a folder")
    files = _images(folder)
    if not files:
        raise DataError(f"data: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        f"put captchas there with their answers (see `farm train --help`)")
    labels = _labels(folder, files)
    unlabelled = [p.name for p in files if p.name not in labels]
    if unlabelled:
        _fail(f"data: {_count(len(unlabelled), 'image')} of {folder} without an answer", unlabelled,
              "Add them to the labels file or remove them")
    missing = sorted(set(labels) - {p.name for p in files})
    if missing:
        _fail(f"data: the labels name {_count(len(missing), 'file')} that are not images in {folder}", missing,
              "Remove those labels or add the images")
    texts, wrong = [], []
    for p in files:
        text = charset.normalize(labels[p.name])
        try:
            texts.append(charset.validate(text))
        except ValueError as e:
            wrong.append(f"{p.name}: {str(e).removeprefix('text: ')}")
    if wrong:
        _fail(f"data: {_count(len(wrong), 'answer')} of {folder} outside the alphabet {charset.alphabet!r} "
              f"(lengths {charset.min_length}-{charset.max_length})", wrong,
              "Fix the labels, or train a substitute for that alphabet (`farm train --alphabet ...`)")
    images, unreadable, too_large = [], [], []
    for p in files:
        try:
            with Image.open(p) as im:  # reads the header only: the size is known before decoding
                if im.width * im.height > MAX_PIXELS:
                    too_large.append(f"{p.name} ({im.width}x{im.height})")
                    continue
                images.append(pixels(im))  # colour kept: a platform's colours are its look
        except (OSError, UnidentifiedImageError, ValueError) as e:
            unreadable.append(f"{p.name} ({type(e).__name__})")
    if unreadable:
        _fail(f"data: {_count(len(unreadable), 'image')} of {folder} cannot be read", unreadable,
              "Replace or remove them")
    if too_large:
        _fail(f"data: {_count(len(too_large), 'image')} of {folder} larger than {MAX_PIXELS:,} pixels, "
              "far beyond a captcha", too_large, "Scale them down to the size the platform serves, or remove them")
    if any(im.ndim == 3 for im in images):  # one mode for all: a grey image in a colour folder is grey in RGB
        images = [np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im for im in images]
    masks = [_given_mask(p, im.shape[:2]) if glyphs else None for p, im in zip(files, images)]
    sizes = Counter(im.shape[:2] for im in images)
    (height, width), _ = sizes.most_common(1)[0]
    notes = []
    if len(sizes) > 1:
        odd = sum(n for s, n in sizes.items() if s != (height, width))
        notes.append(f"resized {odd} of {len(images)} images to the most common size {width}x{height} "
                     f"(found {', '.join(f'{w}x{h}' for h, w in sizes)})")
        log.warning("data: %s", notes[-1])
    found = []
    for k, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != (height, width):
            images[k] = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
            mask = None if mask is None else np.asarray(Image.fromarray(mask).resize((width, height))) > 0
        if glyphs:
            found.append(mask if mask is not None else estimate_glyphs(images[k]))
    if glyphs:
        given = sum(m is not None for m in masks)
        notes.append(f"glyph masks: {given} given, {len(images) - given} estimated")
    shape = (len(images), height, width)
    return Labelled(folder.name, [p.name for p in files], texts, np.stack(images),
                    np.stack(found) if glyphs else np.zeros(shape, dtype=bool), charset, notes)


def folder_mode(path: str | Path) -> str:
    """What a folder's captchas are, as read_folder reads them: "RGB" when any image is in colour, else "L".

    Headers only (no image is decoded); a file that cannot be opened is left to read_folder to name.
    """
    for p in _images(Path(path)) if Path(path).is_dir() else ():
        try:
            with Image.open(p) as im:
                if im.mode not in GREY_MODES:
                    return "RGB"
        except (OSError, UnidentifiedImageError, ValueError):
            continue
    return "L"


def _given_mask(image_path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    path = image_path.with_name(image_path.stem + ".mask.png")
    if not path.exists():
        return None
    try:
        with Image.open(path) as im:
            if im.size != (shape[1], shape[0]):  # checked on the header, before decoding
                raise DataError(f"data: glyph mask {path.name} is {im.width}x{im.height} but its image is "
                                f"{shape[1]}x{shape[0]}")
            return np.asarray(im.convert("L")) > 127
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"data: glyph mask {path} cannot be read ({e}); fix or remove it") from e


def estimate_glyphs(image: np.ndarray, min_pixels: int = 6) -> np.ndarray:
    """Where the glyphs of a uint8 (H, W) or (H, W, 3) image probably are: Otsu's threshold, the minority side as ink,
    specks dropped.

    Captcha text covers less of the image than its background, dark or light; connected
    components under `min_pixels` are noise dots rather than strokes.
    """
    from scipy import ndimage  # here: ~0.5 s to import, and only folders without glyph masks need it
    from skimage.filters import threshold_otsu

    image = grey_array(image)  # colour: its luminance, where ink and paper differ most for a reader
    if image.min() == image.max():
        return np.zeros(image.shape, dtype=bool)
    dark = image <= threshold_otsu(image)
    ink = dark if dark.mean() <= 0.5 else ~dark
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def _source_key(source: str, name: str) -> str:
    return f"sources/{source}/{name}"


def import_source(store: Store, data: Labelled) -> str:
    """Keep a checked folder in the store as a pool source; returns its id (idempotent: same folder, same id)."""
    source = data.digest()
    if store.exists(_source_key(source, "source.json")):
        return source
    for first in range(0, len(data.texts), SOURCE_CHUNK):
        part = slice(first, first + SOURCE_CHUNK)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=data.images[part], glyphs=data.glyphs[part])
        store.put(_source_key(source, f"{first // SOURCE_CHUNK:05d}.npz"), buffer.getvalue())
    store.put(_source_key(source, "labels.jsonl"),
              "".join(json.dumps({"index": i, "answer": t}) + "\n" for i, t in enumerate(data.texts)).encode())
    height, width = data.size
    meta = {"source": source, "folder": data.name, "count": len(data.texts), "height": height, "width": width,
            "mode": "RGB" if data.images.ndim == 4 else "L",
            "charset": {"alphabet": data.charset.alphabet, "min_length": min(map(len, data.texts)),
                        "max_length": max(map(len, data.texts))},
            "notes": data.notes}
    store.put(_source_key(source, "source.json"), json.dumps(meta, indent=2).encode(),  # last: complete
              content_type="application/json")
    return source


def read_source(store: Store, source: str) -> dict:
    """A source's description (count, size, charset); DataError when the store lacks it."""
    try:
        return json.loads(store.get(_source_key(source, "source.json")))
    except KeyError:
        raise DataError(f"source: {source!r} is not in {store.url}; import its folder with "
                        f"`farm generate --source DIR`") from None


def source_mode(store: Store, source: str) -> str:
    """"RGB" when a source's captchas are in colour, else "L": its description's, or (imported before it said)
    its first chunk's."""
    mode = read_source(store, source).get("mode")
    return mode if mode in ("L", "RGB") else ("RGB" if _chunk(store, source, 0)[0].ndim == 4 else "L")


@lru_cache(maxsize=8)
def _chunk(store: Store, source: str, chunk: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with np.load(io.BytesIO(store.get(_source_key(source, f"{chunk:05d}.npz"))), allow_pickle=False) as z:
        images, glyphs = z["images"], z["glyphs"]
    texts = _answers(store, source)[chunk * SOURCE_CHUNK: chunk * SOURCE_CHUNK + len(images)]
    return images, glyphs, texts


@lru_cache(maxsize=4)
def _answers(store: Store, source: str) -> list[str]:
    return [json.loads(line)["answer"] for line in store.get(_source_key(source, "labels.jsonl")).splitlines()]


def source_chunk(store: Store, source: str, indices: list[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, H, W), glyphs (N, H, W), answers) of the source's captchas `indices`."""
    images, glyphs, texts = [], [], []
    for i in indices:
        chunk_images, chunk_glyphs, chunk_texts = _chunk(store, source, i // SOURCE_CHUNK)
        images.append(chunk_images[i % SOURCE_CHUNK])
        glyphs.append(chunk_glyphs[i % SOURCE_CHUNK])
        texts.append(chunk_texts[i % SOURCE_CHUNK])
    return np.stack(images), np.stack(glyphs), texts
