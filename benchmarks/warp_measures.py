"""What a `warp` pool does to a captcha's geometry, in numbers that mean something for a reader.

Glyph-region SSIM compares pixels where they were, so it scores any move of a stroke as damage:
it is printed beside the SSIM of plain translations by 1 and 3 pixels along x (no reader notices
those) to show its scale. What is measured on the field itself, on the glyph region of each
captcha (farm.core.measures.glyph_region), as a pool's shard builds the attack (PoolSpec,
make_attack, one batch seed per shard):

- the largest displacement, in pixels and in stroke widths (the glyph mask's area over its
  skeleton's length, a captcha's mean stroke width);
- the largest local strain, the spectral norm of the field's Jacobian minus the identity: 0.2
  means some stroke segment is stretched, squeezed or sheared by up to 20%, which is what
  changes a glyph's shape (a translation, however far, has none);
- glyph SSIM after the known field is undone (sampled back along its inverse, 5 fixed-point
  steps): what the warp changed besides moving pixels (resampling blur, the 8-bit rounding,
  the border). Not a usability measure: it says that nothing else was done.

  nice -n 10 python -m benchmarks.warp_measures --count 100

Last line: `warp_strain_p90: <90th percentile over captchas of the largest strain>`.
"""

import argparse

import numpy as np
import torch
from skimage.morphology import skeletonize

from farm.core.attacks.methods import make_attack
from farm.core.attacks.warp import Warp
from farm.core.checkpoint import load_solver
from farm.core.measures import glyph_region, measure
from farm.core.seeds import Seeds
from farm.core.spec import PoolSpec
from farm.ops.shard import render_shard
from farm.storage import registry


class Recorded(Warp):
    """The warp method, keeping the control points it ends each batch with (the field it serves)."""

    def warp(self, images, control):
        if not control.requires_grad:  # the last call of a batch: the captchas it returns
            self.controls.append(control.detach().cpu())
        return super().warp(images, control)


def strain(field: np.ndarray) -> np.ndarray:
    """(2, H, W) displacement (x, y) -> (H, W) spectral norm of its Jacobian: the local stretch or shear."""
    (dxdy, dxdx), (dydy, dydx) = np.gradient(field[0]), np.gradient(field[1])
    jacobians = np.stack([np.stack([dxdx, dxdy], -1), np.stack([dydx, dydy], -1)], -2)  # (H, W, 2, 2)
    return np.linalg.norm(jacobians, ord=2, axis=(-2, -1))


def undo(adversarial: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """adversarial(q) = clean(q + f(q)), so clean(p) = adversarial(q) where q = p - f(q): found by fixed point."""
    back = -moved
    for _ in range(5):
        back = -Warp.resample(moved, back)  # f read at p + back, the current estimate of q
    return Warp.resample(adversarial, back)


def across(pixels: float, height: int, width: int) -> torch.Tensor:
    """(1, 2, H, W): a plain translation by `pixels` along x."""
    moved = torch.zeros(1, 2, height, width)
    moved[:, 0] = pixels
    return moved


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0, 0].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    solver = load_solver(*registry.bundled())
    spec = PoolSpec.from_preset("warp", count=args.count, shard_size=args.count).validate()
    clean = render_shard(spec, 0, Seeds(b"benchmark"))
    attack = make_attack(spec.method, [solver], **spec.attack_settings(), seed=spec.seed * 1_000_003)
    recorded = Recorded([solver], **spec.attack_settings(), seed=spec.seed * 1_000_003)
    recorded.controls = []
    x = torch.from_numpy(clean.images).unsqueeze(1).float() / 255
    adversarial = recorded(x, clean.texts)
    assert torch.equal(adversarial, attack(x, clean.texts)), "the recording changed the attack"
    h, w = x.shape[-2:]
    fields = Warp.upsample(torch.cat(recorded.controls), h, w)  # (N, 2, H, W)
    rows = []
    for k in range(args.count):
        c, a, glyphs = clean.images[k], to_uint8(adversarial[k:k + 1]), clean.glyphs[k]
        region = glyph_region(glyphs)
        f = fields[k].numpy()
        length = np.hypot(f[0], f[1])[region].max()
        stroke = glyphs.sum() / max(1, skeletonize(glyphs).sum())
        shifted = {s: to_uint8(Warp.resample(x[k:k + 1], across(s, h, w))) for s in (1, 3)}
        undone = to_uint8(undo(torch.from_numpy(a).float()[None, None] / 255, fields[k:k + 1]))
        rows.append({"ssim": measure(c, a, glyphs)["ssim_glyph"], "length": length, "stroke": stroke,
                     "widths": length / stroke, "strain": strain(f)[region].max(),
                     "shift1": measure(c, shifted[1], glyphs)["ssim_glyph"],
                     "shift3": measure(c, shifted[3], glyphs)["ssim_glyph"],
                     "undone": measure(c, undone, glyphs)["ssim_glyph"]})
    column = lambda name: np.array([r[name] for r in rows])  # noqa: E731
    read = lambda images: sum(r == t for r, t in zip(solver.read(images), clean.texts)) / args.count  # noqa: E731
    print(f"{args.count} classic captchas, preset warp ({spec.displacement:g} px, {spec.grid_rows}x{spec.grid_cols}, "
          f"{spec.steps} steps); substitute reads clean {read(x):.1%}, warp {read(adversarial):.1%}")
    print(f"glyph SSIM vs clean: warp {column('ssim').mean():.3f}; a plain translation by 1 px "
          f"{column('shift1').mean():.3f}, by 3 px {column('shift3').mean():.3f}")
    for name, what in (("length", "largest displacement on the glyphs, px"), ("stroke", "stroke width, px"),
                       ("widths", "largest displacement / stroke width"), ("strain", "largest local strain")):
        values = column(name)
        print(f"{what:40s} median {np.median(values):.3f}  p90 {np.percentile(values, 90):.3f}  max {values.max():.3f}")
    print(f"glyph SSIM after undoing the known field: {column('undone').mean():.3f} (resampling, rounding, border)")
    print(f"warp_strain_p90: {np.percentile(column('strain'), 90):.4f}")


if __name__ == "__main__":
    main()
