"""Bring your own scheme, measured: a substitute trained on a labelled folder of a scheme the farm never saw,
then an adversarial pool generated from a held-out folder of that scheme.

    PYTHONPATH=/tmp/plugin-site python -m benchmarks.own_scheme --scheme dotted --out /tmp/own

Renders OUT/train (N captchas, answers in labels.csv) and OUT/heldout (answers in the file names)
with the scheme (a plugin, e.g. examples/captchafarm-dotted installed with --target), then runs
the commands a platform would run and prints their figures as JSON:
  farm train --data OUT/train ...            -> the card (accuracy on the folder's own validation split)
  farm generate --source OUT/heldout ...     -> clean and adversarial accuracy of the substitute on it
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from farm.core.schemes import captcha_seed, get_scheme


def render_folder(scheme: str, folder: Path, count: int, stream: int, names: str) -> None:
    """`count` captchas; answers in labels.csv ("csv") or in the file names ("names")."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / ".complete").exists():
        return
    renderer, rows = get_scheme(scheme), []
    for i in range(count):
        captcha = renderer.sample(captcha_seed(2026, i, stream))
        name = f"{i:06d}.png" if names == "csv" else f"{captcha.text}_{i:06d}.png"
        Image.fromarray(captcha.image).save(folder / name)
        rows.append((name, captcha.text))
    if names == "csv":
        with (folder / "labels.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("file", "answer"), *rows])
    (folder / ".complete").touch()


def farm(*args: str, env: dict) -> dict:
    done = subprocess.run(["farm", *args, "--json"], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"farm {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheme", default="dotted")
    parser.add_argument("--out", type=Path, default=Path("/tmp/own-scheme"))
    parser.add_argument("--train", type=int, default=20_000, help="Labelled captchas to train on.")
    parser.add_argument("--heldout", type=int, default=1_000, help="Held-out captchas to perturb.")
    parser.add_argument("--alphabet", default="lower+digits")
    parser.add_argument("--mix", default="classic=0.5,lines=0.25,wave=0.25", help="Generated schemes mixed in.")
    parser.add_argument("--data-weight", default="0.7")
    parser.add_argument("--steps", default="4000")
    parser.add_argument("--samples", default="40000", help="Generated captchas of --mix, rendered once.")
    args = parser.parse_args()
    render_folder(args.scheme, args.out / "train", args.train, 11, "csv")
    render_folder(args.scheme, args.out / "heldout", args.heldout, 12, "names")
    env = {**os.environ, "FARM_STORE": str(args.out / "store")}
    card = farm("train", "--out", str(args.out / "substitute"), "--data", str(args.out / "train"),
                "--data-weight", args.data_weight, "--mix", args.mix, "--alphabet", args.alphabet,
                "--samples", args.samples, "--steps", args.steps, env=env)
    pool = farm("generate", "--pool", f"{args.scheme}-heldout", "--source", str(args.out / "heldout"),
                "--checkpoint", str(args.out / "substitute"), "--no-progress", env=env)
    print(json.dumps({"scheme": args.scheme, "train_captchas": args.train, "heldout_captchas": args.heldout,
                      "alphabet": card["charset"]["alphabet"], "train_seconds": card["training"]["seconds"],
                      "card_accuracy": card["metrics"]["accuracy"],
                      "heldout_clean_accuracy": pool["substitute_accuracy_clean"],
                      "heldout_adversarial_accuracy": pool["substitute_accuracy_adversarial"],
                      "mean_ssim": pool["mean_ssim"], "pool": pool["pool"], "store": pool["store"]}, indent=2))


if __name__ == "__main__":
    main()
