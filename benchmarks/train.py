"""Training throughput: images per second of `farm train`'s loop on this machine.

Last line: `train_images_per_second: <rate>`.
"""

import argparse
import tempfile
import time
from pathlib import Path

from farm.ops.train import TrainConfig, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to train")
    args = parser.parse_args()
    # calibrate steps to the time asked for: a short run first
    with tempfile.TemporaryDirectory() as tmp:
        probe = TrainConfig(samples=4096, steps=30, eval_every=10_000, val_count=20)
        started = time.perf_counter()
        train(probe, Path(tmp) / "probe", progress=False, final_count=10)
        per_step = (time.perf_counter() - started) / 30
        steps = max(50, int(args.minutes * 60 / per_step * 0.8))
        config = TrainConfig(samples=max(4096, steps * 16), steps=steps, eval_every=10**9, val_count=20)
        card = train(config, Path(tmp) / "run", progress=False, final_count=10)
    seconds = card["training"]["seconds"]
    print(f"steps {steps}, batch {config.batch_size}, {seconds:.1f} s in the training loop")
    print(f"train_images_per_second: {steps * config.batch_size / seconds:.1f}")


if __name__ == "__main__":
    main()
