"""`warp`: a smooth geometric distortion placed by gradient; no pixel is added, the captcha is resampled.

Noise and geometry are learned apart: a bot adapted on labelled noise pools reads a warp
generation as if it had never adapted, and the other way round (issue 26, benchmarks/moving_target.py).
"""

import torch
import torch.nn.functional as F

from farm.core.attacks.base import Attack
from farm.core.attacks.settings import WARP
from farm.core.identity import WEIGHT, Shapes, scale_to_keep

__all__ = ["Warp", "OVERSHOOT"]

# How far a bicubic upsampling (PyTorch's kernel, a = -0.75) can reach beyond its control points: the
# sum of its weights' magnitudes halfway between two points is 2 * (0.59375 + 0.09375) = 1.375 along
# each axis of the grid, so 1.375 ** 2 in two. A pixel moves at most OVERSHOOT * displacement along x
# and along y (1.45 measured on 16 captchas at the defaults: 4.35 px for 3). The field is not clipped,
# as it was benchmarked: clipping would flatten it where it is steepest.
OVERSHOOT = 1.375 ** 2


class Warp(Attack):
    """Signed gradient ascent on a displacement field's control points (Simard et al. 2003 for the field).

    A field of grid_rows x grid_cols control points (pixels, each within `displacement` along x and
    along y), upsampled bicubically to the captcha (a pixel moves at most OVERSHOOT times as far),
    moves every pixel (F.grid_sample, bilinear, border padding); each step moves the control points
    by displacement_step along the sign of the gradient of the substitutes' loss (CTC of the true
    label; summed over an ensemble, balanced), read through input diversity. Every step is spent.
    Elastic distortion is how captcha schemes have always been drawn, so a warped captcha stays a
    captcha to a person.

    Given the glyphs' shapes (shapes=: each glyph drawn as its own character and its nearest rivals in its
    pose, farm.core.identity.rivals), the ascent is steered away from turning a glyph into another
    (identity.Shapes.shortfall, weighed by identity.WEIGHT) and each captcha's field is then scaled down
    (identity.SCALES) until every glyph is nearer its own character's shape than any rival's: a warp
    that turns an O into a 0 is no captcha. Without them (a scheme that cannot draw them) the field is
    served as found.

    Settings: WARP (displacement 3 px, displacement_step 0.4 px, steps 20, grid_rows 3, grid_cols 8,
    diversity 0.7). It takes no norm, eps, mask or glyph budget: it adds no pixel, and a mask would
    cut moved strokes at its border; a mask other than all-True or a budget is a ValueError.
    Shape: images (B, 1, H, W) in [0, 1] -> (B, 1, H, W); control points (B, 2, grid_rows, grid_cols)
    and the field upsampled from them (B, 2, H, W), pixels (x, y).
    """

    name = "warp"
    settings = WARP
    moves_glyphs = True
    slots: tuple[int, int] | None = None  # (L, C) of the shapes the current call was given
    norm, smoothing, random_start, early_stop = "linf", 0.0, False, False  # read by the base, not taken

    def default_alpha(self) -> None:
        """None: warp's step is displacement_step, in pixels, not a pixel value."""
        return None

    @staticmethod
    def upsample(control: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, 2, rows, cols) control points -> (B, 2, H, W): how far each pixel is moved, pixels (x, y)."""
        return F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)

    @staticmethod
    def resample(images: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        """Each pixel p of `images` (B, 1, H, W) read at p + moved(p), `moved` (B, 2, H, W) in pixels (x, y)."""
        b, _, height, width = images.shape
        identity = F.affine_grid(torch.eye(2, 3, device=images.device).expand(b, 2, 3), (b, 1, height, width),
                                 align_corners=False)
        scale = torch.tensor([2 / width, 2 / height], device=images.device).view(1, 2, 1, 1)
        grid = identity + (moved * scale).permute(0, 2, 3, 1)  # (B, H, W, 2) in grid_sample's [-1, 1]
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def warp(self, images: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        """The images resampled along the field of `control`."""
        return self.resample(images, self.upsample(control, *images.shape[-2:]))

    def __call__(self, images, labels, mask=None, targets=None, budget=None, glyphs=None, start=None, shapes=None):
        """As Attack's, and shapes (B, L, C, H, W) bool: each glyph's own shape and its rivals' (identity.rivals).
        They travel to each batch as planes of the mask after its own (B, 1 + L * C, H, W)."""
        self.slots = None
        if shapes is not None:
            self.slots = check_shapes(shapes, images)
            mask = torch.ones_like(images[:, :1], dtype=torch.bool) if mask is None else mask.bool()
            mask = torch.cat([mask, shapes.flatten(1, 2)], 1)
        return super().__call__(images, labels, mask, targets, budget, glyphs, start)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        if start is not None:
            raise ValueError("start: warp moves the clean captcha's pixels; it refines no given start")
        mask, shapes = split_shapes(mask, self.slots)
        if budget is not None or not bool(mask.all()):
            raise ValueError("mask: warp moves the whole captcha and adds no pixel; it takes no mask or budget")
        x0 = images.to(self.device, torch.float32)
        control = self.field(x0, labels, targets, generator, shapes)
        with torch.no_grad():
            return self.warp(x0, control).clamp(0, 1)

    def field(self, x0: torch.Tensor, labels, targets, generator, shapes: torch.Tensor | None = None) -> torch.Tensor:
        """The control points (B, 2, grid_rows, grid_cols) the gradient ascent ends at for captchas `x0`; with the
        glyphs' `shapes` (B, L, C, H, W), steered away from turning glyphs and scaled down until every one is kept."""
        for solver in self.solvers:
            solver.model.eval()
        goal = [self.charset.encode(self.charset.normalize(t)) for t in (targets or labels)]
        control = torch.zeros(len(x0), 2, self.grid_rows, self.grid_cols, device=self.device)
        if shapes is not None:
            shapes = shapes.to(self.device)
            (_, _, rivals, height, width), own = shapes.shape, shapes[:, :, 0].float()
            compared = Shapes(shapes.reshape(-1, rivals, height, width))
        for _ in range(self.steps):
            control.requires_grad_(True)
            loss, _ = self._loss(self.transform(self.warp(x0, control), generator), goal, generator)
            objective = -loss.sum() if targets else loss.sum()
            if shapes is not None:
                moved = self.warp(own, control).reshape(-1, height, width)
                objective = objective - WEIGHT * compared.shortfall(moved).sum()
            grad, = torch.autograd.grad(objective, control)
            control = (control.detach() + self.displacement_step * grad.sign()).clamp(-self.displacement,
                                                                                      self.displacement)
        control = control.detach()
        if shapes is None:
            return control
        with torch.no_grad():
            return scale_to_keep(lambda points, planes: self.warp(planes, points), control, shapes)


def check_shapes(shapes: torch.Tensor, images: torch.Tensor) -> tuple[int, int]:
    """(L, C) of glyph shapes (B, L, C, H, W) bool for `images` (B, ?, H, W); ValueError naming what is wrong."""
    expected = (len(images), *images.shape[-2:])
    if shapes.dim() != 5 or shapes.dtype != torch.bool or (shapes.shape[0], *shapes.shape[-2:]) != expected:
        raise ValueError(f"shapes: {shapes.dtype} of shape {tuple(shapes.shape)}; for images "
                         f"{tuple(images.shape)}, bool (B, L, C, H, W) with (B, H, W) = {expected}")
    return shapes.shape[1], shapes.shape[2]


def split_shapes(mask: torch.Tensor, slots: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's mask planes -> (its own planes, the glyph shapes (B, L, C, H, W) after them, or None)."""
    if slots is None:
        return mask, None
    own = mask.shape[1] - slots[0] * slots[1]
    return mask[:, :own], mask[:, own:].reshape(len(mask), *slots, *mask.shape[-2:])
