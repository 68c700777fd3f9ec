"""Rendering rate of every scheme beside the captcha package's own ImageCaptcha, on one core.

Rendering sits on every worker's hot path; `classic` must keep up with the library it imitates
(both draw the same colour image; tests/test_classic_colour.py checks the bytes) while also
drawing a glyph mask. Rounds alternate so both sides see the same machine.
Last line: `classic_vs_captcha_lib: <ratio>` (goal >= 1.0).
"""

import argparse
import os
import time

from captcha.image import ImageCaptcha

from farm.core.schemes import get_scheme, scheme_names


def rate(fn, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="captchas per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the issue asks
    library = ImageCaptcha()
    texts = ["AB3D", "X9QZ", "M2K7", "TT4W"]
    contenders = {name: (lambda i, s=get_scheme(name): s.sample(i)) for name in scheme_names()}
    contenders["captcha_lib"] = lambda i: library.generate_image(texts[i % 4])
    rates = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            rates[name].append(rate(fn, args.count))
    best = {name: max(r) for name, r in rates.items()}
    for name, r in best.items():
        print(f"{name:12s} {r:8.0f} captchas/s")
    print(f"classic_vs_captcha_lib: {best['classic'] / best['captcha_lib']:.3f}")


if __name__ == "__main__":
    main()
