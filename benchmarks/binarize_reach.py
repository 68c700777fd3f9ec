"""How much of a captcha a perturbation budget can move across an attacker's Otsu threshold.

Binarisation keeps only which side of the threshold a pixel lies on, so a perturbation matters
after it only where it pushes pixels across. This measures, on clean captchas of a scheme, the
threshold, the background level, and the share of pixels within reach: off the glyph region
(the glyph mask dilated like `farm generate` does) at the off-glyph budget, and in the glyph
region at the glyph budget, with the threshold held fixed (perturbing moves it a little; the
background dominates the histogram). No solver involved: it bounds what any attack at that budget can do.
Last line: `off_glyph_reach: <mean share of off-glyph pixels within eps of the threshold>`.
"""

import argparse
import json

import numpy as np
import torch

from farm.core.measures import glyph_region
from farm.core.preprocess import otsu
from farm.core.schemes import get_scheme


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", default="classic")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--eps", type=float, nargs="*", default=[32, 48, 64], help="off-glyph budgets, in /255")
    parser.add_argument("--eps-glyph", type=float, nargs="*", default=[8, 16, 32], help="glyph budgets, in /255")
    parser.add_argument("--margin", type=int, default=1, help="glyph mask dilation, as farm generate")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    scheme = get_scheme(args.scheme)
    captchas = [scheme.sample(10_000 + i) for i in range(args.count)]
    images = np.stack([c.image for c in captchas]).astype(np.float64)
    thresholds = otsu(torch.from_numpy(images).float().unsqueeze(1) / 255).view(-1).numpy() * 255
    regions = glyph_region(np.stack([c.mask for c in captchas]), args.margin)
    distance = np.abs(images - thresholds[:, None, None])
    # the background well away from the strokes (3 pixels), not their anti-aliased edges
    background = np.array([np.median(img[~glyph_region(c.mask, 3)]) for img, c in zip(images, captchas)])

    def reach(where, eps):
        return float(np.mean([(d[w] <= eps).mean() for d, w in zip(distance, where) if w.any()]))

    result = {"scheme": args.scheme, "count": args.count,
              "threshold": {"mean": float(thresholds.mean()), "min": float(thresholds.min()),
                            "max": float(thresholds.max())},
              "background_median": float(background.mean()),
              "gap_background_to_threshold": float((background - thresholds).mean()),
              "off_glyph_reach": {f"{e:g}/255": reach(~regions, e) for e in args.eps},
              "glyph_region_reach": {f"{e:g}/255": reach(regions, e) for e in args.eps_glyph}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        t = result["threshold"]
        print(f"{args.count} {args.scheme} captchas: Otsu threshold {t['mean']:.0f}/255 ({t['min']:.0f}-{t['max']:.0f}), "
              f"background {result['background_median']:.0f}/255, gap {result['gap_background_to_threshold']:.0f}/255")
        for name in ("off_glyph_reach", "glyph_region_reach"):
            cells = "  ".join(f"{k}: {v:.1%}" for k, v in result[name].items())
            print(f"{name.replace('_', ' '):20s} {cells}")
    first = f"{args.eps[0]:g}/255"
    print(f"off_glyph_reach: {result['off_glyph_reach'][first]:.3f}")


if __name__ == "__main__":
    main()
