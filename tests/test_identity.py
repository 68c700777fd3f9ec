"""A warp keeps every glyph its own character: classic draws each glyph as every other character in its pose,
the identity check tells a glyph turned into another from one merely moved, and warp pools are guarded by it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from farm.core.attacks.edge import disc_kernel
from farm.core.attacks.methods import make_attack
from farm.core.attacks.warp import Warp
from farm.core.identity import RIVALS, SCALES, Shapes, drop_turning_dots, rivals, scale_to_keep, with_ink
from farm.core.model import to_planes, to_tensor
from farm.core.schemes import get_scheme
from farm.core.seeds import UNKEYED, Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import perturb, render_shard

CLASSIC = get_scheme("classic")


@pytest.fixture(scope="module")
def drawn():
    """Eight classic captchas and each glyph drawn as every character: [(captcha, shapes (4, 36, H, W))]."""
    return [(CLASSIC.sample(seed), CLASSIC.shapes(CLASSIC.sample(seed).text, seed)) for seed in range(8)]


def own(captcha, shapes) -> torch.Tensor:
    return torch.from_numpy(np.stack([shapes[k, CLASSIC.alphabet.index(c)] for k, c in enumerate(captcha.text)]))


def test_classic_draws_each_glyph_as_every_character_in_its_own_place(drawn):
    for captcha, shapes in drawn:
        assert shapes.shape == (len(captcha.text), len(CLASSIC.alphabet), CLASSIC.height, CLASSIC.width)
        assert np.array_equal(own(captcha, shapes).numpy().any(0), captcha.mask)  # its own shapes are its glyphs
        for k in range(len(captcha.text)):  # every other character is drawn somewhere else than nothing
            assert shapes[k].reshape(len(CLASSIC.alphabet), -1).any(1).all()
            assert len({shapes[k, a].tobytes() for a in range(len(CLASSIC.alphabet))}) == len(CLASSIC.alphabet)


def test_a_scheme_that_cannot_draw_shapes_says_so():
    assert get_scheme("lines").shapes("AB12", 3) is None


def test_a_glyph_moved_as_a_whole_is_still_itself_and_others_are_not(drawn):
    captcha, shapes = drawn[0]
    glyphs = own(captcha, shapes).float()
    moved = torch.roll(glyphs, shifts=(2, -3), dims=(1, 2))  # 2 px down, 3 px left: within the check's shifts
    scores = Shapes(torch.from_numpy(shapes)).similarity(moved)
    mine = scores[torch.arange(len(captcha.text)), [CLASSIC.alphabet.index(c) for c in captcha.text]]
    assert (mine > 0.98).all()  # 1 but where the roll wrapped a stroke at the border round to the other side
    assert Shapes(torch.from_numpy(rivals(shapes, captcha.text, CLASSIC.alphabet))).kept(moved).all()
    assert (scores.topk(2, dim=1).values[:, 1] < 0.999).all()


def test_a_glyph_drawn_as_its_nearest_rival_is_not_kept(drawn):
    captcha, shapes = drawn[1]
    shortlist = torch.from_numpy(rivals(shapes, captcha.text, CLASSIC.alphabet))
    assert shortlist.shape == (len(captcha.text), 1 + RIVALS, CLASSIC.height, CLASSIC.width)
    assert torch.equal(shortlist[:, 0], own(captcha, shapes))
    assert not Shapes(shortlist).kept(shortlist[:, 1].float()).any()  # a glyph turned into its nearest rival
    assert Shapes(shortlist).kept(shortlist[:, 0].float()).all()


def test_scale_to_keep_weakens_only_the_fields_that_change_a_glyph(drawn):
    shapes = torch.from_numpy(np.stack([rivals(s, c.text, CLASSIC.alphabet) for c, s in drawn[:2]]))
    control = torch.ones(2, 2, 3, 8)

    def moved_by(points, planes):  # captcha 0: its field turns every glyph into its rival unless scaled to 0.4
        out = planes.clone()
        for k in range(len(points)):
            if float(points[k].abs().max()) > 0.5 and torch.equal(planes[k], shapes[0, :, 0].float()):
                out[k] = shapes[0, :, 1].float()
        return out
    scaled = scale_to_keep(moved_by, control, shapes)
    assert float(scaled[0].abs().max()) == pytest.approx(max(s for s in SCALES if s <= 0.5))
    assert torch.equal(scaled[1], control[1])


@pytest.mark.slow
def test_warp_pools_keep_every_glyph_nearer_its_own_character(substitute):
    """The shard draws the shapes for a warp and the attack steers and scales its fields: no glyph of the served
    captchas is nearer one of its rivals than its own character, and fewer than without them are nearer any other
    character of the alphabet."""
    spec = PoolSpec.from_preset("warp", count=12, shard_size=12, scheme="classic", seed=5).validate()
    clean = render_shard(spec, 0, Seeds(b"", UNKEYED))
    assert clean.shapes.shape == (12, 4, 1 + RIVALS, CLASSIC.height, CLASSIC.width)
    assert render_shard(PoolSpec.from_preset("edge", count=4, shard_size=4, seed=5), 0, Seeds(b"", UNKEYED)).shapes \
        is None  # only a method that moves glyphs pays for them

    fields = {}
    for name, shapes in (("guarded", torch.from_numpy(clean.shapes)), ("free", None)):
        attack = make_attack("warp", [substitute], **spec.attack_settings(), seed=spec.seed * 1_000_003)
        found, controls = attack.field, []
        attack.field = lambda *args: controls.append(found(*args)) or controls[-1]
        attack(to_tensor(clean.images), clean.texts, **({} if shapes is None else {"shapes": shapes}))
        fields[name] = Warp.upsample(torch.cat(controls), CLASSIC.height, CLASSIC.width)
    every = [CLASSIC.shapes(t, Seeds(b"", UNKEYED).captcha(spec.seed, i)) for i, t in enumerate(clean.texts)]

    def changed(field, shortlist: bool) -> int:
        count = 0
        for k, (text, shapes) in enumerate(zip(clean.texts, every)):
            glyphs = torch.from_numpy(np.stack([shapes[s, CLASSIC.alphabet.index(c)] for s, c in enumerate(text)]))
            moved = Warp.resample(glyphs[None].float(), field[k:k + 1])[0]
            order = [CLASSIC.alphabet.index(c) for c in text]
            full = np.stack([np.concatenate([s[None, o], np.delete(s, o, 0)]) for s, o in zip(shapes, order)])
            compared = clean.shapes[k, :len(text)] if shortlist else full
            count += int((~Shapes(torch.from_numpy(compared)).kept(moved)).sum())
        return count
    assert changed(fields["free"], shortlist=True) > 0
    assert changed(fields["guarded"], shortlist=True) == 0
    assert changed(fields["guarded"], shortlist=False) < changed(fields["free"], shortlist=False)
    served = perturb(spec, clean, [substitute], 0)  # the pool's own path gives what the guarded attack gave
    guarded_images = Warp.resample(to_tensor(clean.images), fields["guarded"]).clamp(0, 1)
    assert np.abs(served.astype(int) - np.round(guarded_images.permute(0, 2, 3, 1).numpy() * 255)).max() <= 1


def test_a_dot_that_turns_a_glyph_is_dropped_and_one_that_does_not_is_kept():
    own = torch.zeros(24, 24, dtype=torch.bool)
    own[4:20, 8:11] = True  # a bar
    rival = own.clone()
    rival[4:9, 11:13] = True  # the bar with a knob at its top right
    shapes, glyphs = torch.stack([own, rival])[None, None], own.float()[None, None]
    kernel = disc_kernel(3.5)

    def ink_of(density):
        return 1 - torch.exp(-2 * F.conv2d(density, kernel, padding=kernel.shape[-1] // 2))
    density = torch.zeros(1, 1, 24, 24)
    density[0, 0, 6, 12] = density[0, 0, 18, 20] = 2.0  # a dot on the knob's place, one off the bar
    assert not Shapes(shapes[0, 0][None]).kept(with_ink(glyphs[0], ink_of(density)[0])).any()  # read as the rival
    kept = drop_turning_dots(density, ink_of, kernel, glyphs, shapes)
    assert kept.nonzero().tolist() == [[0, 0, 18, 20]]
    assert torch.equal(drop_turning_dots(kept, ink_of, kernel, glyphs, shapes), kept)  # nothing left to drop


def test_warped_edge_dots_turn_no_glyph(substitute):
    """A dot touching a warped stroke is read as part of it (a threshold joins them); the dots that would tip a glyph
    nearer a rival are dropped (unguarded, 3 of these 64 glyphs turn)."""
    spec = PoolSpec.from_preset("warped_edge", count=16, shard_size=16, scheme="classic", seed=5).validate()
    clean = render_shard(spec, 0, Seeds(b"", UNKEYED))
    shapes = torch.from_numpy(clean.shapes)
    attack = make_attack("warped_edge", [substitute], **spec.attack_settings(), seed=1)
    attack(to_tensor(clean.images), clean.texts, to_planes(clean.allowed), glyphs=to_planes(clean.glyphs),
           shapes=shapes)
    ink = torch.cat(attack.ink)
    assert (ink > 0.5).flatten(1).any(1).all()  # every captcha keeps dots
    b, slots, c, height, width = shapes.shape
    glyphs = Warp.resample(shapes[:, :, 0].float(), torch.cat(attack.fields)).reshape(-1, height, width)
    inked = with_ink(glyphs, (ink > 0.5).float().expand(-1, slots, -1, -1).reshape(-1, height, width))
    assert Shapes(shapes.reshape(-1, c, height, width)).kept(inked).all()


def test_shapes_of_the_wrong_shape_are_refused(substitute):
    images = torch.zeros(2, 3, CLASSIC.height, CLASSIC.width)
    attack = make_attack("warp", [substitute], steps=1)
    with pytest.raises(ValueError, match="shapes"):
        attack(images, ["AB12", "CD34"], shapes=torch.zeros(2, 4, 8, 10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="shapes"):
        make_attack("warped_edge", [substitute], steps=1)(
            images, ["AB12", "CD34"], glyphs=to_planes(np.zeros((2, CLASSIC.height, CLASSIC.width), bool)),
            shapes=torch.zeros(3, 4, 8, CLASSIC.height, CLASSIC.width, dtype=torch.bool))
