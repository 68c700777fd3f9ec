"""Does a warp change which character a glyph is? And what does keeping every glyph its own cost the warp?

Glyph-region SSIM scores any moved stroke as damage, and every solver is one a warp is aimed at or
transfers to, so neither says whether a warped C is still a C. farm.core.identity does, without a
learned model: `classic` draws each glyph as every character of the alphabet in the same pose and
place (Scheme.shapes), and a glyph moved along the field keeps its identity while its own
character's shape is still the nearest (cosine similarity of the masks, best over shifts of up to
4 px). Here every glyph is checked against all 36 characters; the guard a pool runs checks the 11
nearest (identity.rivals), so this also says what the guard's shortlist lets through.

On the same fresh captchas (the method's preset, as a pool's shard builds the attack):
- the method aimed at CURRENT of --store (default: a fresh store, the bundled substitute and, on
  colour, the donors its card names; a store after a move: its donors and hardened copies),
  without the guard (the field as found) and with it (each field scaled down until every glyph
  keeps its identity, as pools are made);
- control: the unguarded fields' control points shuffled among grid points and captchas, with
  random signs: the same amount of the same distortion, placed by nothing;
- what the held-out zoo solvers (never attack targets) and the substitute read of each, as served.

  python -m benchmarks.warp_identity --count 100 [--store URL] [--method warp|warped_edge] [--set NAME=VALUE] \
      [--sheet PNG]

--sheet draws the captchas whose glyphs the unguarded warp turned: clean | unguarded | guarded, twice the size,
each turned glyph named under its row (docs/warp-identity-sheet.png).

Last line: `warp_identity_changed: <share of glyphs nearer another character, unguarded>`.

Measured 2026-12-07, 100 fresh colour `classic` (seed 2607), warp at its preset (3 px, 3x8, 20 steps), one
torch thread each, two runs side by side:

  python -m benchmarks.warp_identity --count 100                      # aimed at the bundled substitute
  python -m benchmarks.warp_identity --count 100 --store DIR/store    # aimed at v5 of an arms race's round 1

                         glyphs kept  captchas all kept  read as served: substitute position-a transformer-a crnn-aug
  bundled substitute (v1)
    unguarded               80.0%          37.0%                           5.0%     24.0%       19.0%      18.0%
    guarded                 98.8%          95.0%                           8.0%     28.0%       27.0%      25.0%
    control (shuffled)      95.0%          83.0%
  v5: the substitute and three copies hardened on its own ink pool (arms race round 1, crnn-aug's store)
    unguarded               72.8%          27.0%                           2.0%      9.0%        5.0%       3.0%
    guarded                 99.2%          97.0%                           3.0%     16.0%       12.0%      10.0%
    control (shuffled)      91.5%          71.0%

(clean: 100% kept; the solvers read 97 / 82 / 92 / 88%.) Unguarded, the warp turns glyphs three times as
often as the same fields at random places: S->5, O->0, 2->Z, D->0, 0->O, Z->2, K->X, D->O, E->F, L->C.
Guarded, what is left (0.8-1.2% of glyphs) is a character outside the 11 rivals checked (with 7: 1.8%).
Trials for the guard, aimed at v1 (unadapted held-out solvers, as served): the field scaled down after the
ascent alone 43 / 37 / 33% (61% of captchas scaled); a step refused when it turns a glyph 33 / 26 / 28%;
the ascent steered by identity.shortfall, weight 50, 28 / 27 / 25% (8% scaled; weight 200: 29 / 27 / 30%;
both steered and refused: 29 / 28 / 25%): steering was kept. Cost, 32 captchas aimed at v5's four models,
CPU time beside two other jobs: 0.25 s a captcha unguarded, 0.33 guarded (0.37 before the shapes were prepared
once a batch, identity.Shapes; same bytes), and 0.04 to draw the shapes: +50%.

warped_edge (the warped_ink family: the field, then edge's dots on the warped glyphs), where each glyph also
counts the dots that touch it as its ink (solid, as a threshold reads them):

  python -m benchmarks.warp_identity --count 100 --method warped_edge [--store DIR/store]

                            aimed at v1 + crnn-b + resnet-a      aimed at v9 (+ crnn-b, resnet-a, copies v6-v8)
  fields unguarded               75.0% kept (31.0% all)              78.2% (39.0%)
  fields guarded                 99.8%      (99.0%)                  99.8% (99.0%)
  guarded, with its dots         99.0%      (96.0%)                  99.2% (97.0%)
  unguarded, with its dots       71.5%      (24.0%)                  75.2% (33.0%)

(v9: transformer-a's round 2 of benchmarks/arms_race_adaptive.py, 2026-12-08; before the dots were guarded, the
v9 of crnn-aug's round 2 kept 91.2% (66.0%) with its dots.)

Before the dots were guarded they turned some 8% of the glyphs the guarded field kept (91.8% kept aimed at v1):
they tip glyphs the field left close to a rival (K->X, D->O, O->0). Now a dot that tips a glyph nearer one of its
rivals is dropped (identity.drop_turning_dots); what is left (1.0%: L->I, K->A, W->M, U->V; aimed at v9 0.8%:
K->A, E->C, V->Q) is a character outside the 11 rivals checked. Held-out solvers read 0% as served either way.
The colour default's dots (edge, the same 100 captchas, the substitute and both donors) turn none: on glyphs where
the scheme left them, no dot tips one.
"""

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from benchmarks.cleanup import held_out_solvers
import farm.core.attacks.warp as warp_module
from farm.core.attacks.methods import make_attack
from farm.core.attacks.settings import WARPED_EDGE
from farm.core.attacks.warp import Warp
from farm.core.identity import Shapes, rivals, scale_to_keep, with_ink
from farm.core.model import to_arrays, to_planes, to_tensor
from farm.core.schemes import get_scheme
from farm.core.spec import PoolSpec
from farm.ops.preview import image_grid
from farm.ops.shard import attack_solvers
from farm.storage import registry
from farm.storage.store import LocalStore, open_store


def attacked(method: str, solvers, spec: PoolSpec, captchas, shapes=None):
    """(adversarial images, the control points (B, 2, rows, cols) of their fields, warped_edge's dots (B, H, W) bool
    or None), as a pool's shard builds the attack; with `shapes`, guarded."""
    attack = make_attack(method, solvers, **spec.attack_settings(), seed=spec.seed * 1_000_003)
    warper = attack if method == "warp" else attack.warper
    kept, field = [], warper.field
    warper.field = lambda *a: kept.append(field(*a)) or kept[-1]
    images = to_tensor([c.image for c in captchas])
    extra = {} if shapes is None else {"shapes": torch.from_numpy(shapes)}
    adversarial = attack(images, [c.text for c in captchas], glyphs=to_planes(np.stack([c.mask for c in captchas])),
                         **extra)
    dots = torch.cat(attack.ink)[:, 0] > 0.5 if hasattr(attack, "ink") else None
    return adversarial, torch.cat(kept), dots


SCALED: list[torch.Tensor] = []  # per guarded batch: the strength each captcha's field kept at the end (0-1)


def recording_scale(moved_by, control, shapes):
    """identity.scale_to_keep, keeping how far it scaled each field down."""
    scaled = scale_to_keep(moved_by, control, shapes)
    SCALED.append(scaled.flatten(1).abs().amax(1) / control.flatten(1).abs().amax(1).clamp_min(1e-9))
    return scaled


def shuffled(control: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The control points (B, 2, R, C) in random places among captchas and grid points, with random signs."""
    flat = control.reshape(-1)
    signs = torch.randint(0, 2, flat.shape, generator=generator) * 2 - 1
    return (flat[torch.randperm(flat.numel(), generator=generator)] * signs).reshape(control.shape)


def identities(captchas, every: list[np.ndarray], alphabet: str, control: torch.Tensor | None,
               dots: torch.Tensor | None = None):
    """[(kept, margin, read as)] per glyph: moved along `control`'s field (None: as drawn), nearest of all shapes.
    With `dots` (B, H, W) bool, each glyph counts the dots that touch it (identity.with_ink) as its own ink."""
    rows = []
    for k, (captcha, shapes) in enumerate(zip(captchas, every)):
        own = torch.from_numpy(np.stack([shapes[slot, alphabet.index(c)] for slot, c in enumerate(captcha.text)]))
        moved = own.float() if control is None else Warp.resample(own[None].float(), Warp.upsample(
            control[k:k + 1], *own.shape[-2:]))[0]
        if dots is not None:
            moved = with_ink(moved, dots[k][None].float())
        scores = Shapes(torch.from_numpy(shapes)).similarity(moved)
        for slot, c in enumerate(captcha.text):
            mine = scores[slot, alphabet.index(c)]
            rest = scores[slot].clone()
            rest[alphabet.index(c)] = -1
            rows.append((bool(mine > rest.max()), float(mine - rest.max()), alphabet[int(rest.argmax())]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="aim at this store's CURRENT [default: a fresh store: the bundled substitute]")
    parser.add_argument("--method", choices=("warp", "warped_edge"), default="warp",
                        help="whose field: its preset's settings [default: %(default)s]")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2607)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting other than the preset's, e.g. displacement=2 (repeatable)")
    parser.add_argument("--sheet", help="write a contact sheet of the captchas the unguarded warp turned here (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = open_store(args.store) if args.store else LocalStore(Path(tempfile.mkdtemp()) / "store")
    registry.ensure_current(store)
    substitute = registry.load(store)
    scheme = get_scheme("classic")
    seeds = [int(s) for s in np.random.default_rng(args.seed).integers(2**63, size=args.count)]
    captchas = [scheme.sample(s) for s in seeds]
    every = [scheme.shapes(c.text, s) for c, s in zip(captchas, seeds)]
    guard = np.stack([rivals(shapes, c.text, scheme.alphabet) for c, shapes in zip(captchas, every)])
    settings = {name: WARPED_EDGE[name].cast(value) for name, value in (item.split("=", 1) for item in args.set)}
    spec = PoolSpec.from_preset(args.method, count=args.count, shard_size=args.count, scheme="classic",
                                **settings).validate()
    solvers = attack_solvers(spec, substitute)
    print(f"{args.count} colour classic captchas; {args.method} ({spec.displacement:g} px, {spec.grid_rows}x"
          f"{spec.grid_cols}) aimed at {substitute.version}'s {len(solvers)} models "
          f"({', '.join(s.version for s in solvers)})")
    free, free_control, free_dots = attacked(args.method, solvers, spec, captchas)
    warp_module.scale_to_keep = recording_scale
    guarded, guarded_control, guarded_dots = attacked(args.method, solvers, spec, captchas, guard)
    strength = torch.cat(SCALED)
    fields = {"scheme alone": (None, None, None), f"{args.method}, unguarded": (free_control, free, None),
              f"{args.method}, guarded": (guarded_control, guarded, None),
              "control (shuffled field)": (shuffled(free_control, torch.Generator().manual_seed(args.seed)), None,
                                           None)}
    if free_dots is not None:  # warped_edge: the same glyphs with the dots that touch them
        fields["unguarded, with its dots"] = (free_control, None, free_dots)
        fields["guarded, with its dots"] = (guarded_control, None, guarded_dots)
    texts = [c.text for c in captchas]
    solvers_read = {"substitute": substitute, **held_out_solvers()}
    clean = to_tensor([c.image for c in captchas])
    print(f"{'field':26s} glyphs kept  captchas all kept  median margin  read as served: "
          + "  ".join(f"{name}" for name in solvers_read))
    confusions, changed, turned = {}, None, {}
    for name, (control, images, dots) in fields.items():
        rows = identities(captchas, every, scheme.alphabet, control, dots)
        kept = np.array([r[0] for r in rows]).reshape(args.count, -1)
        if name.endswith("unguarded") or name == "guarded, with its dots":
            confusions[name] = Counter(f"{c}->{r[2]}" for c, r in zip("".join(texts), rows) if not r[0])
        if name.endswith("unguarded"):
            changed = 1 - kept.mean()
            slots = [k for k, text in enumerate(texts) for _ in text]
            for k, c, r in zip(slots, "".join(texts), rows):
                if not r[0]:
                    turned.setdefault(k, []).append(f"{c}->{r[2]}")
        served = images if images is not None else (clean if control is None and dots is None else None)
        reads = "  ".join(f"{np.mean([a == t for a, t in zip(s.read(to_arrays(served)), texts)]):6.1%}"
                          if served is not None else "     -" for s in solvers_read.values())
        print(f"{name:26s} {kept.mean():11.1%}  {kept.all(1).mean():17.1%}  {np.median([r[1] for r in rows]):13.3f}"
              f"  {reads}")
    print(f"guard: captchas whose field was scaled down after the ascent {np.mean((strength < 1).numpy()):.1%}; "
          f"by the strength kept: "
          + ", ".join(f"{level:g} {n}" for level, n in sorted(Counter(np.round(strength.numpy(), 1).tolist()).items())))
    for name, counts in confusions.items():
        print(f"identity changes, {name}: " + (", ".join(f"{k} {n}" for k, n in counts.most_common(12)) or "none"))
    if args.sheet:
        shown = list(turned)[:10]
        served = [to_arrays(images[shown]) for images in (free, guarded)]
        image_grid([(captchas[k].image, served[0][i], served[1][i]) for i, k in enumerate(shown)],
                   [f"{texts[k]}: unguarded turns {', '.join(turned[k])}" for k in shown],
                   f"clean | {args.method} unguarded | guarded, aimed at {substitute.version}", zoom=2).save(args.sheet)
        print(f"sheet: {args.sheet}")
    print(f"warp_identity_changed: {changed:.4f}")


if __name__ == "__main__":
    main()
