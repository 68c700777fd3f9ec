"""Contact sheets: clean | adversarial | amplified perturbation, with the answer and the substitute's reading."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from farm.core.charset import answer_matches
from farm.storage.pools import pool_charset, pool_images
from farm.storage.manifest import read_manifest
from farm.core.schemes.draw import font
from farm.storage.store import Store

__all__ = ["contact_sheet", "image_grid", "pool_pairs"]

GAIN = 8  # perturbations of a few /255 are invisible at 1x; 8x shows their shape


def pool_pairs(store: Store, pool: str, n: int) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """The first n captchas of a pool: (key record with `solved`, clean image, adversarial image).

    `solved`: the substitute read it, judged as a typed answer is (the pool's charset decides case).
    """
    manifest = read_manifest(store, pool)
    records, clean, adversarial = pool_images(store, pool, n, manifest)
    charset = pool_charset(manifest)
    records = [{**r, "solved": answer_matches(charset, r["answer"], r["reading"])} for r in records]
    return list(zip(records, clean, adversarial))


def contact_sheet(pairs: list[tuple[dict, np.ndarray, np.ndarray]], title: str = "") -> Image.Image:
    """One row per captcha; a caption line under each row. Colour pools give a colour sheet (the perturbation
    per channel)."""
    if not pairs:
        raise ValueError("preview: the pool has no complete shard yet")
    rows, captions = [], []
    for record, clean, adversarial in pairs:
        diff = adversarial.astype(np.int16) - clean.astype(np.int16)
        rows.append((clean, adversarial, np.clip(128 + GAIN * diff, 0, 255).astype(np.uint8)))
        verdict = "solved" if record["solved"] else "fooled"
        captions.append(f"answer {record['answer']}  substitute: {record['reading_clean']} -> {record['reading']} "
                        f"({verdict})  ssim {record['ssim']:.2f}")
    return image_grid(rows, captions, title or "clean | adversarial | perturbation x8")


def image_grid(rows: list[tuple[np.ndarray, ...]], captions: list[str], title: str, zoom: int = 1) -> Image.Image:
    """Images (uint8, grey or colour, all of one size) side by side, `zoom` times their size, a caption under each
    row and a title on top: the layout of every contact sheet."""
    h, w = (zoom * n for n in rows[0][0].shape[:2])
    pad, caption, header = 6, 16, 22
    size = (len(rows[0]) * (w + pad) + pad, header + len(rows) * (h + caption + pad) + pad)
    sheet = Image.new("RGB" if rows[0][0].ndim == 3 else "L", size, "white")
    draw = ImageDraw.Draw(sheet)
    small = font("DejaVuSansMono-Bold.ttf", 11)
    draw.text((pad, 4), title, fill=0, font=small)
    for k, (row, text) in enumerate(zip(rows, captions)):
        y = header + k * (h + caption + pad)
        for col, image in enumerate(row):
            picture = Image.fromarray(image)
            if zoom != 1:
                picture = picture.resize((w, h), Image.Resampling.NEAREST)
            sheet.paste(picture, (pad + col * (w + pad), y))
        draw.text((pad, y + h + 2), text, fill=0, font=small)
    return sheet
