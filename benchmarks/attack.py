"""How close the attack loop runs to the compute limit.

efficiency = (steps x captchas/s of the attack) / (captchas/s of the bare model's forward+backward
w.r.t. the input at the same batch). Beside it, the same figure for a plain PGD loop written the
obvious way (per-step label encoding, loss over the batch, clamp and project by hand).
Last line: `attack_efficiency: <ratio>` (goal >= 0.85).
"""

import argparse
import time

import torch

from farm.storage import registry
from farm.core.attacks.methods import make_attack
from farm.core.checkpoint import load_solver
from farm.core.model import ctc_loss
from farm.core.spec import PoolSpec
from farm.ops.shard import render_shard
from farm.core.seeds import Seeds


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    solver = load_solver(*registry.bundled())
    model, charset = solver.model.eval(), solver.charset
    clean = render_shard(PoolSpec(count=args.batch, shard_size=args.batch, mask="full"), 0, Seeds(b"benchmark"))
    x = torch.from_numpy(clean.images).unsqueeze(1).float() / 255
    labels = clean.texts

    def forward_backward():
        xx = x.clone().requires_grad_(True)
        loss = ctc_loss(model(xx), [charset.encode(t) for t in labels], reduction="none").sum()
        torch.autograd.grad(loss, xx)

    attack = make_attack("iterative", solver, steps=args.steps, early_stop=False, batch_size=args.batch)

    def ours():
        attack(x, labels)

    def plain_pgd():
        eps, alpha = 8 / 255, 2 / 255
        adv = x.clone()
        for _ in range(args.steps):
            adv.requires_grad_(True)
            out = model(adv)
            targets = torch.tensor([charset.alphabet.index(c) + 1 for t in labels for c in t])
            loss = torch.nn.functional.ctc_loss(out, targets, torch.full((len(labels),), out.shape[0]),
                                                torch.tensor([len(t) for t in labels]), zero_infinity=True)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                adv = adv + alpha * adv.grad.sign()
                adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
        return adv

    base = args.batch / timed(forward_backward, args.repeat * args.steps)
    ours_rate = args.steps * args.batch / timed(ours, args.repeat)
    plain_rate = args.steps * args.batch / timed(plain_pgd, args.repeat)
    print(f"model forward+backward     {base:8.1f} captchas/s (batch {args.batch})")
    print(f"attack (steps x captchas/s) {ours_rate:8.1f}  efficiency {ours_rate / base:.3f}")
    print(f"plain PGD loop              {plain_rate:8.1f}  efficiency {plain_rate / base:.3f}")
    print(f"attack_efficiency: {ours_rate / base:.3f}")


if __name__ == "__main__":
    main()
