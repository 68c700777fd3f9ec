"""Does a warped glyph stay its own character? Its shape against the other characters' in its own pose.

Glyph-region SSIM scores any moved stroke as damage, and every solver is one a warp is aimed at or
transfers to, so neither says whether a warped C is still a C. A scheme that can draw each glyph as
every other character in the same pose and place (Scheme.shapes: `classic`) gives a reader no
attack aims at: the glyph, moved along the field, is compared with those shapes by the cosine
similarity of the masks, best over shifts of up to SHIFT px (a warp moves glyphs as a whole, which
people do not mind); it keeps its identity while its own character's shape is still the nearest.

Measured (benchmarks/warp_identity.py, 100 colour `classic`): `warp` aimed at the bundled
substitute made 20.0% of glyphs nearer another character's shape (O->0, S->5, D->O), aimed at an
arms race's hardened copies 27.3%; the same fields at random places 5.0% and 8.5%. So a warp's
ascent is steered off turning glyphs (Shapes.shortfall) and its field kept only as strong as keeps
every glyph (scale_to_keep): 1.2% and 0.8% then, a character outside the RIVALS checked.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SHIFT", "RIVALS", "SCALES", "WEIGHT", "MARGIN", "TOUCH", "Shapes", "rivals", "scale_to_keep", "touching",
           "with_ink", "drop_turning_dots"]

SHIFT = 4  # px: a glyph moved as a whole this far is still compared as itself
# The characters a glyph is checked against: the 11 nearest its own shape when clean. Aimed at v5 of the arms race
# (the substitute and three hardened copies), guarded warps left 0.8% of glyphs nearer some other character of all
# 36 with 11 rivals, 1.8% with 7.
RIVALS = 11
SCALES = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)  # the field's strengths tried, strongest first; 0 keeps every glyph
# A warp's ascent steers away from turning glyphs (Shapes.shortfall, weighed against the solvers' CTC loss, nats), so
# that few fields need scaling down at the end. Measured on 100 colour classic, warp aimed at the bundled
# substitute (benchmarks/warp_identity.py): held-out solvers read 24 / 19 / 18% unguarded, 43 / 37 / 33% with
# the fields scaled down after the ascent alone (61% of captchas), 28 / 27 / 25% steered with weight 50 (8%
# scaled down; weight 200: 29 / 27 / 30%; refusing a step that turns a glyph: 33 / 26 / 28%). Chosen by the
# substitute's reading, which orders them alike: 19% scaled after the ascent, 10% refusing, 8% steering.
WEIGHT = 50.0
MARGIN = 0.02  # how much nearer its own shape than any rival's a glyph is steered to stay
TOUCH = 2  # px: ink this near a glyph's strokes is read as part of the glyph (a threshold joins them)


class Shapes:
    """Glyphs' shapes (N, C, H, W), each glyph's own first, then its rivals': what moved glyphs (N, H, W) are
    compared with. Prepared once, for a warp compares every step."""

    def __init__(self, shapes: torch.Tensor):
        self.shapes = shapes.float()
        self.drawn = (shapes > 0).any(1).any(1)  # (N, W): the columns any shape covers
        self.blank = ~(shapes[:, 0] > 0).flatten(1).any(1)  # (N,): a shorter text's padding

    def similarity(self, moved: torch.Tensor, shift: int = SHIFT) -> torch.Tensor:
        """Cosine similarity (N, C) of each glyph's coverage with each shape, best over shifts of up to `shift` px;
        0 where either is empty. Compared on the columns where any of them lies (a glyph is narrow)."""
        n, c, height, width = self.shapes.shape
        columns = (moved > 0.05).any(1) | self.drawn
        occupied = columns.any(1)
        first = torch.where(occupied, columns.float().argmax(1), torch.zeros_like(occupied, dtype=torch.long))
        last = torch.where(occupied, width - 1 - columns.flip(1).float().argmax(1), first)
        span = int((last - first).max()) + 1 if n else 1
        left = first.clamp(max=width - span)
        take = (left[:, None] + torch.arange(span)[None]).clamp(max=width - 1)  # (N, span)
        glyph = moved.gather(2, take[:, None].expand(n, height, span))
        kernels = self.shapes.gather(3, take[:, None, None].expand(n, c, height, span))
        padded = F.pad(glyph, (shift,) * 4)[None]  # (1, N, H + 2s, span + 2s)
        scores = F.conv2d(padded, kernels.reshape(n * c, 1, height, span), groups=n).reshape(n, c, -1).amax(-1)
        norms = glyph.flatten(1).norm(dim=1)[:, None] * kernels.flatten(2).norm(dim=2)
        return torch.where(norms > 0, scores / norms.clamp_min(1e-12), torch.zeros_like(scores))

    def kept(self, moved: torch.Tensor) -> torch.Tensor:
        """(N,) bool: each glyph is nearer its own shape than any rival's; a blank slot is kept."""
        scores = self.similarity(moved)
        return (scores[:, 0] > scores[:, 1:].amax(1)) | self.blank

    def shortfall(self, moved: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
        """(N,) how far each glyph is from being `margin` nearer its own shape than any rival's: 0 when it is.
        Differentiable in `moved`: what a warp's ascent is steered by."""
        scores = self.similarity(moved)
        return F.relu(scores[:, 1:].amax(1) - scores[:, 0] + margin)


def rivals(shapes: np.ndarray, text: str, alphabet: str, count: int = RIVALS) -> np.ndarray:
    """(L, A, H, W) shapes of each glyph as every character (Scheme.shapes) -> (L, 1 + count, H, W): its own first,
    then the `count` others nearest it, the ones it could be warped into."""
    own = np.array([alphabet.index(c) for c in text])
    all_shapes = torch.from_numpy(shapes)
    scores = Shapes(all_shapes).similarity(all_shapes[torch.arange(len(text)), torch.from_numpy(own)].float())
    scores[torch.arange(len(text)), torch.from_numpy(own)] = -1.0
    nearest = scores.topk(count, dim=1).indices.numpy()
    return np.stack([shapes[k, [own[k], *nearest[k]]] for k in range(len(text))])


def scale_to_keep(moved_by, control: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """Each captcha's control points (B, ...) times the largest of SCALES under which every glyph keeps its identity.

    moved_by(control, planes (B, P, H, W)) -> the planes moved along those control points' fields;
    shapes (B, L, C, H, W) bool, each glyph's own shape first (rivals).
    """
    b, slots, c, height, width = shapes.shape
    scale = torch.zeros(b, device=control.device)
    open_ = torch.ones(b, dtype=torch.bool)
    for level in SCALES[:-1]:
        rows = open_.nonzero().flatten()
        if not len(rows):
            break
        moved = moved_by(control[rows] * level, shapes[rows, :, 0].float())  # (R, L, H, W)
        ok = Shapes(shapes[rows].reshape(-1, c, height, width)).kept(moved.reshape(-1, height, width))
        ok = ok.reshape(len(rows), slots).all(1)
        scale[rows[ok]] = level
        open_[rows[ok]] = False
    return control * scale.view(-1, *([1] * (control.dim() - 1)))


def touching(glyphs: torch.Tensor) -> torch.Tensor:
    """Where ink touches glyphs (..., H, W): within TOUCH px of their strokes (where they are over half), bool."""
    strokes = (glyphs > 0.5).float().reshape(-1, 1, *glyphs.shape[-2:])
    return (F.max_pool2d(strokes, 2 * TOUCH + 1, stride=1, padding=TOUCH) > 0).reshape(glyphs.shape)


def with_ink(moved: torch.Tensor, ink: torch.Tensor) -> torch.Tensor:
    """Glyphs (N, H, W) with the ink (N, H, W) that lies within TOUCH px of their strokes: a dot in the glyphs'
    tone that touches a stroke is joined to it by any threshold, so it is read as part of that glyph."""
    return torch.maximum(moved, ink * touching(moved))


def drop_turning_dots(density: torch.Tensor, ink_of, kernel: torch.Tensor, moved: torch.Tensor,
                      shapes: torch.Tensor) -> torch.Tensor:
    """Dot centres `density` (B, 1, H, W) less the dots that turn a glyph nearer a rival's shape than its own.

    While a captcha has such glyphs (counting the ink that touches them, with_ink, solid where it is over half, as a
    threshold reads it), the dot whose disc lies most within TOUCH px of them is dropped; a glyph no dot touches is
    left as it is (its field keeps it).
    ink_of(density) -> the dots' ink (B, 1, H, W); kernel: a dot's disc (1, 1, k, k); moved (B, L, H, W): the
    glyphs where they lie; shapes (B, L, C, H, W): each glyph's own shape first, then its rivals' (rivals).
    """
    b, slots, c, height, width = shapes.shape
    compared = Shapes(shapes.reshape(-1, c, height, width))
    density = density.clone()
    for _ in range(int((density > 0).flatten(1).sum(1).max()) if b else 0):  # at most every dot goes
        ink = (ink_of(density) > 0.5).float().expand(-1, slots, -1, -1)  # solid, as a threshold reads a dot
        turned = ~compared.kept(with_ink(moved.reshape(-1, height, width), ink.reshape(-1, height, width)))
        turned = turned.reshape(b, slots)
        if not turned.any():
            break
        glyphs = (moved * turned[..., None, None]).amax(1, keepdim=True)  # (B, 1, H, W): the turned ones
        # a disc centred at each pixel: how much of it lies within reach of the turned glyphs
        overlap = F.conv2d(touching(glyphs).float(), kernel, padding=kernel.shape[-1] // 2)
        overlap = overlap.masked_fill(density <= 0, 0).flatten(1)
        drop = turned.any(1) & (overlap.amax(1) > 0)
        if not drop.any():
            break
        density.view(b, -1)[drop.nonzero().flatten(), overlap.argmax(1)[drop]] = 0
    return density
