"""The base every perturbation method shares: device, eval mode, mask, budget, clamping, the loop.

An attack maximises the CTC loss of the true label (untargeted) or minimises that of a
target label (targeted), summed over one or more substitutes (each steering alike), changing
only pixels the mask allows and staying within an L-inf or L2 ball of radius eps around the
clean captcha.
A method writes only what makes it different: its step direction, its input transforms.

Shape: images (B, 1, H, W) float in [0, 1]; mask (B, 1, H, W) bool or float in {0, 1}.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F

from farm.core.attacks.settings import ITERATIVE, Declaration
from farm.core.checkpoint import Solver

__all__ = ["Attack", "unit_l1", "input_diversity"]

LossFn = Callable[[torch.Tensor, list[list[int]]], torch.Tensor]


def unit_l1(grad: torch.Tensor) -> torch.Tensor:
    """Each captcha's gradient scaled to unit L1 norm: how momentum and ensembles weigh steps alike."""
    return grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def input_diversity(x: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Input diversity (Xie et al. 2019): with `probability`, shrink to 85-100% and pad at a random place.

    One draw for the whole batch: the attacks and the generator's training (farm.ops.generator_training) share it.
    """
    if torch.rand(1, generator=generator).item() >= probability:
        return x
    h, w = x.shape[-2:]
    scale = 0.85 + 0.15 * torch.rand(1, generator=generator).item()
    nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
    small = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    top = int(torch.randint(0, h - nh + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - nw + 1, (1,), generator=generator))
    return F.pad(small, (left, w - nw - left, top, h - nh - top), mode="replicate")


class Attack:
    """Base of the methods. Arguments (Default):

    solvers: one substitute or a list (an ensemble; losses summed, gradients balanced: see _loss).
    **settings: the method's settings by name, as its `settings` declare them (farm.core.attacks.settings:
        names, defaults, ranges); one the method does not take is a ValueError naming the methods that do.
        With early_stop a captcha stops once the substitute misreads it with a margin (targeted: reads
        the target): its loss must pass `stop_loss`, so 8-bit rounding and batch numerics cannot flip it back.
    stop_loss (2.0): CTC loss of the true label (nats; p <= 0.14) a misread captcha must reach to stop.
    loss (each solver's own: CTC): per-captcha loss of (log_probs (T, B, C), label indices); higher means "misread".
    batch_size (64): captchas per forward pass.
    seed (0): seeds random starts and transforms, so a batch perturbs the same way every run.

    A method that does not take a setting the loop reads fixes it as a class attribute (direct: one step).
    """

    name: ClassVar[str] = "attack"
    settings: ClassVar[Declaration] = ITERATIVE
    moves_glyphs: ClassVar[bool] = False  # a warp: takes shapes= and keeps each glyph its own (farm.core.identity)
    alpha: float | None = None
    conversions: float = 0.0  # a method that does not declare it (warp) reads colour through its solvers alone

    def __init__(self, solvers: Solver | Sequence[Solver], *, stop_loss: float = 2.0, loss: LossFn | None = None,
                 batch_size: int = 64, seed: int = 0, device: str | None = None, **settings):
        self.solvers = [solvers] if isinstance(solvers, Solver) else list(solvers)
        if not self.solvers:
            raise ValueError("solvers: need at least one substitute")
        for name, value in self.settings.check(settings, self.name).items():
            setattr(self, name, value)
        if self.alpha is None:
            self.alpha = self.default_alpha()
        self.stop_loss = float(stop_loss)
        self.loss = loss  # None: each solver's own loss (CTC for CTC readers, per-position CE otherwise)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.device = torch.device(device) if device else next(self.solvers[0].model.parameters()).device
        self.charset = self.solvers[0].charset

    @classmethod
    def check(cls, **settings) -> dict:
        """The method's settings, checked and over its defaults, with no model at hand; ValueError as __init__."""
        return cls.settings.check(settings, cls.name)

    def default_alpha(self) -> float:
        """2.5 eps / steps: enough to reach the border of the ball and move along it (Madry et al.)."""
        return 2.5 * self.eps / self.steps

    # -- what methods override -------------------------------------------------------------
    def direction(self, grad: torch.Tensor, state: dict, rows: torch.Tensor) -> torch.Tensor:
        """Step direction from the (masked, smoothed) gradient of the captchas `rows` of the batch.

        `state` persists across steps: a method keeps full-batch tensors there (momentum).
        """
        return self.normalize(grad)

    def transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Input transform applied before each gradient: input diversity and, on colour, a bot's grey conversion
        when asked for; else identity."""
        x = self._diverse(x, generator) if self.diversity > 0 else x
        if self.conversions > 0 and x.shape[1] == 3:  # grey captchas draw nothing: their pools keep their bytes
            from farm.core.preprocess import random_conversion
            x = random_conversion(x, self.conversions, generator)
        return x

    # -- the shared machinery --------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: list[str], mask: torch.Tensor | None = None,
                 targets: list[str] | None = None, budget: torch.Tensor | None = None,
                 glyphs: torch.Tensor | None = None, start: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial versions of `images` (same shape, on the CPU).

        budget: optional per-pixel L-inf radius (B, 1, H, W), each <= eps: e.g. a small budget on
        the glyphs that people read and the full eps off them.
        glyphs: the glyph masks (B, 1, H, W); a method that draws by the glyphs (edge) needs them, the others
        ignore them.
        start: optional images (B, 1, H, W) to start from instead of the clean ones (projected into the
        budget and mask): refining a trained generator's output (farm.core.generator) in a few steps.
        """
        if start is not None and start.shape != images.shape:
            raise ValueError(f"start: shape {tuple(start.shape)} differs from the images' {tuple(images.shape)}")
        if budget is not None and (self.norm != "linf" or float(budget.max()) > self.eps + 1e-6):
            raise ValueError("budget: a per-pixel budget needs norm linf and radii <= eps")
        if len(labels) != len(images):
            raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"targets: {len(targets)} targets for {len(images)} images")
        mask = torch.ones_like(images, dtype=torch.bool) if mask is None else mask.bool()
        out = []
        for first in range(0, len(images), self.batch_size):
            sl = slice(first, first + self.batch_size)
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + first) % 2**64)  # torch takes 64 bits
            out.append(self.attack_batch(images[sl], labels[sl], mask[sl],
                                         targets[sl] if targets is not None else None, generator,
                                         budget[sl] if budget is not None else None,
                                         start[sl] if start is not None else None).cpu())
        return torch.cat(out) if out else images.clone()

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        for solver in self.solvers:
            solver.model.eval()
        x0 = images.to(self.device, torch.float32)
        m = mask.to(self.device, torch.float32)
        radius = budget.to(self.device, torch.float32) if budget is not None else None
        targeted = targets is not None
        goal = [self.charset.normalize(t) for t in (targets if targeted else labels)]  # as the solver reads
        goal_indices = [self.charset.encode(t) for t in goal]
        delta = torch.zeros_like(x0)
        if start is not None:
            delta = self.project((start.to(self.device, torch.float32) - x0) * m, radius)
            delta = (x0 + delta).clamp(0, 1) - x0
        elif self.random_start:
            delta = self.project(self._uniform_ball(x0, generator).to(self.device) * m, radius)
            delta = (x0 + delta).clamp(0, 1) - x0
        active = torch.ones(len(x0), dtype=torch.bool, device=self.device)
        state: dict = {}
        for _ in range(self.steps):
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x = (x0[idx] + delta[idx]).requires_grad_(True)
            loss, log_probs = self._loss(self.transform(x, generator), [goal_indices[i] for i in idx.tolist()],
                                         generator)
            if self.early_stop:  # judged on this forward pass: no extra cost
                done = self._reached(log_probs, [goal[i] for i in idx.tolist()], targeted)
                margin = loss.detach() < self.stop_loss / 4 if targeted else loss.detach() > self.stop_loss
                done = done & margin
                if done.all():
                    active[idx] = False
                    break
            grad, = torch.autograd.grad(-loss.sum() if targeted else loss.sum(), x)
            grad = self.smooth(grad) * m[idx]
            step = self.direction(grad, state, idx)
            if self.early_stop:
                keep = (~done).float().view(-1, 1, 1, 1)
                step = step * keep
                active[idx[done]] = False
            moved = self.project(delta[idx] + self.alpha * step, radius[idx] if radius is not None else None) * m[idx]
            delta[idx] = (x0[idx] + moved).clamp(0, 1) - x0[idx]
        return (x0 + delta).clamp(0, 1).detach()

    def _loss(self, x: torch.Tensor, labels: list[list[int]],
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-captcha loss summed over the substitutes, and the first one's log-probs (for early stopping).

        An ensemble's gradient is balanced: each member's, per captcha, scaled to unit L1 norm
        before they are added (the value stays the plain sum). Summed as they come, the member
        with the steepest loss steers every step, and the others only ride along.
        """
        losses, first = [], None
        for solver in self.solvers:
            log_probs = solver.model(x)
            losses.append(self.loss(log_probs, labels) if self.loss
                          else solver.model.loss(log_probs, labels, reduction="none"))
            first = log_probs if first is None else first
        total = sum(losses)
        if len(losses) == 1:
            return total, first.detach()
        balanced = 0.0
        for loss in losses:
            grad, = torch.autograd.grad(loss.sum(), x, retain_graph=True)
            balanced = balanced + (unit_l1(grad) * x).flatten(1).sum(1)  # linear in x: its gradient is unit_l1(grad)
        return total.detach() + balanced - balanced.detach(), first.detach()

    def _reached(self, log_probs, goal: list[str], targeted: bool) -> torch.Tensor:
        """Per captcha: has the goal been reached (judged by the first substitute)?"""
        readings = self.solvers[0].model.decode(log_probs, self.charset)
        hit = torch.tensor([r == g for r, g in zip(readings, goal)], device=self.device)
        return hit if targeted else ~hit

    def normalize(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest ascent direction of unit norm: sign for L-inf, grad / ||grad||_2 for L2."""
        if self.norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return grad / norms

    def project(self, delta: torch.Tensor, radius: torch.Tensor | None = None) -> torch.Tensor:
        """Back into the eps-ball (or the per-pixel L-inf budget)."""
        if self.norm == "linf":
            if radius is not None:
                return torch.maximum(torch.minimum(delta, radius), -radius)
            return delta.clamp(-self.eps, self.eps)
        norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return delta * (self.eps / norms.clamp_min(1e-12)).clamp(max=1.0)

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        """Translation-invariant gradient (Dong et al. 2019): a Gaussian over the gradient."""
        if self.smoothing <= 0:
            return grad
        from farm.core.preprocess import blur
        return blur(grad, self.smoothing)

    def _uniform_ball(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator) * 2 - 1
        if self.norm == "linf":
            return noise * self.eps
        noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        radius = torch.rand(len(x), generator=generator).view(-1, 1, 1, 1) * self.eps
        return noise * radius

    def _diverse(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return input_diversity(x, self.diversity, generator)
