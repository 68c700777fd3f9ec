"""Colour captchas end to end: schemes declare their mode, solvers read colour through their card's
grey conversion, pools keep colour with per-channel budgets, sources keep a platform's colours."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from farm.core.checkpoint import load_solver, weights_bytes
from farm.core.colour import grey_array
from farm.core.measures import measure
from farm.core.model import to_arrays, to_tensor
from farm.core.schemes import check_scheme, get_scheme
from farm.core.schemes.base import Scheme
from farm.core.spec import PoolSpec
from farm.exceptions import CheckpointError, SchemeError
from farm.ops.preview import contact_sheet, pool_pairs
from farm.ops.submit import generate_pool
from farm.storage.folder import read_folder
from farm.storage.layout import image_key
from farm.storage.pools import pool_images, read_keys
from farm.core.charset import Charset

SECRET = b"test-secret-not-for-production"  # FARM_SECRET of every test (conftest)


def test_classic_is_colour_and_grey_schemes_stay_grey():
    classic = get_scheme("classic").sample(3)
    assert get_scheme("classic").mode == "RGB" and classic.image.shape == (60, 160, 3)
    assert classic.mask.shape == (60, 160)
    assert not (classic.image[..., 0] == classic.image[..., 1]).all()  # really coloured, not grey in RGB
    assert get_scheme("lines").mode == "L" and get_scheme("lines").sample(3).image.ndim == 2


def test_a_scheme_that_breaks_its_mode_is_refused_naming_it():
    class Odd(Scheme):
        name, width, height, mode = "odd", 8, 4, "CMYK"

        def draw(self, text, rng):
            return np.zeros((4, 8), np.uint8), np.zeros((4, 8), bool)

    with pytest.raises(SchemeError, match="mode.*'CMYK'"):
        check_scheme(Odd)

    class Flat(Odd):
        mode = "RGB"

    with pytest.raises(SchemeError, match=r"\(4, 8\), the image with 3 channels \(mode RGB\)"):
        Flat().render("ABCD", 0)


def test_tensors_keep_colour_both_ways():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = to_tensor(list(images))
    assert x.shape == (2, 3, 5, 7) and np.array_equal(to_arrays(x), images)
    assert to_tensor(list(images[..., 0])).shape == (2, 1, 5, 7)


def test_a_solver_reads_colour_through_its_cards_conversion(substitute):
    image = get_scheme("classic").sample(5).image
    as_colour = substitute.model(to_tensor([image]))
    as_grey = substitute.model(to_tensor([grey_array(image)]))  # PIL's convert("L"): BT.601
    assert torch.allclose(as_colour.exp(), as_grey.exp(), atol=0.02)  # probabilities: PIL rounds to levels
    assert substitute.read([image]) == substitute.read([grey_array(image)])
    card = {**substitute.card, "config": {**substitute.card["config"], "grey": "mean"}}
    mean_reader = load_solver(weights_bytes(substitute.model), card)
    assert not torch.allclose(mean_reader.model(to_tensor([image])), as_colour, atol=1e-3)


def test_a_card_naming_an_unknown_grey_conversion_is_refused(substitute):
    card = {**substitute.card, "config": {**substitute.card["config"], "grey": "sepia"}}
    with pytest.raises(CheckpointError, match="grey 'sepia'.*bt601"):
        load_solver(weights_bytes(substitute.model), card)


@pytest.fixture(scope="module")
def colour_pool(tmp_path_factory):
    from farm.core.checkpoint import load_solver as load
    from farm.storage import registry
    from farm.storage.store import LocalStore
    store = LocalStore(tmp_path_factory.mktemp("colour"))
    spec = PoolSpec.from_preset("recommended", count=8, shard_size=8, steps=4)
    generate_pool(store, "c", spec, [load(*registry.bundled())], SECRET, progress=False, processes=1)
    return store, spec


def test_a_colour_pool_keeps_colour_within_a_per_channel_budget(colour_pool):
    store, spec = colour_pool
    records, clean, adversarial = pool_images(store, "c")
    assert clean.shape == adversarial.shape == (8, 60, 160, 3)
    png = Image.open(io.BytesIO(store.get(image_key("c", records[0]["id"]))))
    assert png.mode == "RGB"
    diff = np.abs(adversarial.astype(int) - clean.astype(int))
    assert diff.max() <= round(spec.eps * 255) and (diff > 0).any()
    record = read_keys(store, "c")[0]
    assert {"ssim_colour", "ssim_glyph_colour"} <= set(record) and 0 < record["ssim_glyph_colour"] <= 1


def test_measures_judge_colour_on_luminance_and_on_colour():
    clean = np.full((20, 30, 3), 200, np.uint8)
    glyphs = np.zeros((20, 30), bool)
    glyphs[5:15, 10:20] = True
    clean[glyphs] = (30, 60, 150)
    # a change of hue that keeps luminance: invisible to a luminance SSIM, seen by the colour one
    shifted = clean.copy()
    shifted[glyphs] = (60, 45, 150)
    m = measure(clean, shifted, glyphs)
    assert abs(int(grey_array(shifted)[10, 15]) - int(grey_array(clean)[10, 15])) <= 1
    assert m["ssim_glyph"] > 0.99 > m["ssim_glyph_colour"]
    assert m["linf"] == pytest.approx(30 / 255, abs=1e-6)


def test_contact_sheets_of_colour_pools_are_in_colour_on_white(colour_pool):
    store, _ = colour_pool
    sheet = contact_sheet(pool_pairs(store, "c", 2))
    assert sheet.mode == "RGB" and sheet.getpixel((1, 1)) == (255, 255, 255)
    pixels = np.asarray(sheet)
    assert (pixels[..., 0] != pixels[..., 2]).any()


def test_a_source_folder_keeps_the_platforms_colours(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    made = {}
    for i in range(4):
        captcha = get_scheme("classic").sample(i)
        Image.fromarray(captcha.image).save(folder / f"{captcha.text}_{i}.png")
        made[captcha.text] = captcha.image
    Image.fromarray(grey_array(made[next(iter(made))])).save(folder / "ABCD_9.png")  # one grey image among them
    data = read_folder(folder, Charset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4, 4))
    assert data.images.shape == (5, 60, 160, 3) and data.glyphs.shape == (5, 60, 160) and data.glyphs.any()
    for text, image in zip(data.texts, data.images):
        if text in made:
            assert np.array_equal(image, made[text])
        else:  # the grey one, as grey in RGB
            assert (image[..., 0] == image[..., 1]).all()


def test_farm_solve_reads_a_colour_file(tmp_path, substitute):
    captcha = get_scheme("classic").sample(11)
    Image.fromarray(captcha.image).save(tmp_path / "c.png")
    out = subprocess.run(["farm", "solve", "--json", str(tmp_path / "c.png")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["text"] == substitute.read([captcha.image])[0]


def test_conversions_put_colour_into_the_perturbation_and_leave_grey_captchas_alone(substitute):
    from farm.core.attacks.methods import make_attack
    captchas = [get_scheme("classic").sample(i) for i in range(4)]
    colour, texts = to_tensor([c.image for c in captchas]), [c.text for c in captchas]
    settings = dict(eps=16 / 255, steps=4, early_stop=False, seed=3)
    plain = make_attack("momentum", substitute, **settings)(colour, texts) - colour
    # share of pixels whose channels move in opposite directions: a change of colour, not of brightness
    opposed = lambda d: ((d.amax(1) > 1e-6) & (d.amin(1) < -1e-6)).float().mean().item()  # noqa: E731
    mixed = make_attack("momentum", substitute, conversions=1.0, **settings)(colour, texts) - colour
    # through BT.601 alone every channel steps alike: only clipping at 0 and 255 opposes them, now and then
    assert opposed(mixed) > 0.1 > 5 * opposed(plain)
    grey = to_tensor([grey_array(c.image) for c in captchas])
    assert torch.equal(make_attack("momentum", substitute, conversions=1.0, **settings)(grey, texts),
                       make_attack("momentum", substitute, **settings)(grey, texts))


def test_pool_stats_of_a_colour_pool_tell_luminance_and_colour_apart(colour_pool):
    from farm.storage.pools import pool_stats
    store, _ = colour_pool
    stats, records = pool_stats(store, "c"), read_keys(store, "c")
    assert stats["mean_ssim_glyph_colour"] == round(sum(r["ssim_glyph_colour"] for r in records) / len(records), 5)
    assert stats["mean_ssim_glyph"] == round(sum(r["ssim_glyph"] for r in records) / len(records), 5)


def test_what_a_solver_is_fed_ready_made_is_grey_by_its_cards_conversion(substitute):
    from farm.core.checkpoint import input_bytes
    from farm.core.dataset import render_batch
    from farm.core.model import model_input
    from farm.core.schemes import captcha_seed
    card = {**substitute.card, "config": {**substitute.card["config"], "grey": "mean"}}
    mean_reader = load_solver(weights_bytes(substitute.model), card)
    captcha = get_scheme("classic").sample(captcha_seed(0, 0, 1))
    itself = model_input(to_tensor([captcha.image]), mean_reader.model.config).mul(255)  # what it computes itself
    size = tuple(itself.shape[-2:])
    for fed in (input_bytes(mean_reader, [captcha.image]), render_batch(["classic"], [captcha_seed(0, 0, 1)], size,
                                                                        "mean").images.mul(255)):
        assert (fed.float() - itself).abs().max() <= 1
    assert (input_bytes(substitute, [captcha.image]).float() - itself).abs().max() > 1  # BT.601 is another grey
