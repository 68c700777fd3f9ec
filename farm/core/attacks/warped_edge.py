"""`warped_edge`: warp's displacement field, then edge's dots and noise on the warped captcha (issue 26).

A bot that retrained on one family reads another as if it had not (farm.core.families); an operator
who keeps every label has learned geometry and ink apart after two rounds, and what neither taught
it is both at once. The field is placed by the gradient of every solver, as warp's; the glyph masks,
the mask and the two-level budget are moved along the same field, so the dots go on the edges of the
warped strokes and the noise keeps the budget of the pixels it lies on. Then edge as it is.

Shape: see Edge; the glyph masks (B, 1, H, W) are required (glyphs=).
"""

import torch

from farm.core.attacks.edge import Edge
from farm.core.attacks.settings import WARP, WARPED_EDGE
from farm.core.attacks.warp import Warp, check_shapes, split_shapes
from farm.core.identity import drop_turning_dots

__all__ = ["WarpedEdge"]


class WarpedEdge(Edge):
    """Warp (its settings: displacement, displacement_step, grid_rows, grid_cols), then Edge on what it made; one
    `steps` and `diversity` for both."""

    name = "warped_edge"
    settings = WARPED_EDGE
    moves_glyphs = True
    slots: tuple[int, int] | None = None  # as Warp's
    shapes: torch.Tensor | None = None
    placed: tuple[torch.Tensor, torch.Tensor] | None = None  # a batch's glyphs where the field moved them, and shapes

    def __init__(self, solvers, **kwargs):
        super().__init__(solvers, **kwargs)
        self.fields: list[torch.Tensor] = []
        self.warper = Warp(self.solvers, **{name: getattr(self, name) for name in WARP.names},
                           stop_loss=self.stop_loss, loss=self.loss, batch_size=self.batch_size, seed=self.seed,
                           device=str(self.device))

    def __call__(self, images, labels, mask=None, targets=None, budget=None, glyphs=None, start=None, shapes=None):
        """As Edge's, and the glyphs' shapes as Warp takes them: the field keeps every glyph its own."""
        self.fields = []  # per batch, as edge's ink: how far each pixel was moved (B, 2, H, W)
        self.slots, self.shapes = (None if shapes is None else check_shapes(shapes, images)), shapes
        return super().__call__(images, labels, mask, targets, budget, glyphs, start)

    def planes(self, mask: torch.Tensor, glyphs: torch.Tensor) -> torch.Tensor:
        """The mask and the glyphs (B, 2, H, W), then the shapes' planes: where dots may go is worked out per batch,
        once it is warped."""
        shapes = [] if self.shapes is None else [self.shapes.flatten(1, 2)]
        return torch.cat([mask, glyphs.bool(), *shapes], 1)

    def attack_batch(self, images, labels, mask, targets, generator, budget=None, start=None) -> torch.Tensor:
        x0 = images.to(self.device, torch.float32)
        mask, shapes = split_shapes(mask, self.slots)
        allowed, glyphs = (mask[:, k:k + 1].to(self.device, torch.float32) for k in range(2))
        moved = Warp.upsample(self.warper.field(x0, labels, targets, generator, shapes), *x0.shape[-2:])
        self.fields.append(moved.cpu())
        with torch.no_grad():
            warped, glyphs, allowed = (Warp.resample(plane, moved) for plane in (x0, glyphs, allowed))
            budget = None if budget is None else Warp.resample(budget.to(self.device, torch.float32), moved)
            if shapes is not None:  # the dots, like the field, keep every glyph its own (keep_glyphs)
                shapes = shapes.to(self.device)
                self.placed = Warp.resample(shapes[:, :, 0].float(), moved), shapes
        zones = Edge.planes(self, allowed.cpu() > 0.5, glyphs.cpu() > 0.5)  # edge's, on the warped glyphs
        try:
            return super().attack_batch(warped.clamp(0, 1), labels, zones, targets, generator, budget)
        finally:
            self.placed = None

    def keep_glyphs(self, density: torch.Tensor, where: torch.Tensor, ink: torch.Tensor) -> torch.Tensor:
        """Edge's dots less those that turn a warped glyph nearer a rival's shape (identity.drop_turning_dots): a dot
        touching a stroke is read as part of it, and tips glyphs the field left close to a rival."""
        if self.placed is None:
            return ink
        kept = drop_turning_dots(density, lambda centres: self.ink_of(centres, where), self.kernel, *self.placed)
        return self.ink_of(kept, where)
