"""What each attack method takes: every setting's name, default, range and one line of help.

One declaration per method, and everything that handles settings reads it: the method's class
takes and checks its arguments by it, PoolSpec.validate checks a spec by it, the presets
(farm.core.presets) fill a spec from it and `farm generate` builds its options from it. A new
setting is declared here once. Torch-free, so that `farm --help` stays fast and a spec is refused
before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from farm.exceptions import SettingError

__all__ = ["Setting", "Declaration", "NORMS", "MAX_L2_EPS", "MAX_SMOOTHING", "MAX_DECAY", "MAX_DISPLACEMENT",
           "MAX_GRID", "MAX_BAND", "DIRECT", "ITERATIVE", "MOMENTUM", "ROBUST", "WARP", "EDGE", "WARPED_EDGE",
           "GENERATOR",
           "REFINE_STEP_OF", "PLACEMENTS",
           "DECLARED", "METHOD_NAMES", "SETTINGS",
           "declaration", "takers", "not_taken", "listed"]

NORMS = ("linf", "l2")
# The largest L2 budget that keeps a captcha readable. Measured with the bundled substitute on 32
# classic captchas (160x60) under `farm generate`'s transfer setting with --norm l2 (momentum, DI,
# TI, 20 steps all spent), mask full: mean SSIM of the glyph region 0.957 at eps 4, 0.868 at 8,
# 0.840 at 9, 0.776 at 12 (mask background: 0.917 at 8). 8 is the largest keeping it >= 0.85.
# For scale: the L2 ball around the L-inf ball of 32/255 over the whole captcha has radius 12.3.
MAX_L2_EPS = 8.0
# A Gaussian of radius 3 sigma = 30 pixels already spans a 60-pixel-high captcha; a wider one
# flattens the gradient to a constant (and its kernel grows without bound).
MAX_SMOOTHING = 10.0
# Dong et al. sweep mu from 0 to 2 and find 1 best; above 2 past gradients swamp the new one, and
# the accumulated g grows like mu ** steps until it overflows.
MAX_DECAY = 2.0
# warp: a control point may move this many pixels at most. Classic's strokes are ~4 px wide and its
# glyphs ~25 px apart: past 8 px a stroke can be carried onto its neighbour's place (a bound
# against typos, not a measured readability limit; the benchmarked warp moves 3 px).
MAX_DISPLACEMENT = 8.0
# Control points down or across the captcha: 32 across a 160-pixel captcha are 5 px apart, as close
# as a field can be and stay smooth at the displacements above.
MAX_GRID = 32
# Edge dots bridge, thicken or close a stroke only when they touch it: a centre further than a few
# pixels off the glyphs leaves a separate blob that a reader (and an opening) parts from the letter.
MAX_BAND = 6
PLACEMENTS = ("gradient", "random")  # random: the control, the same dots at random places of the band

Check = Callable[[object, dict], None]  # (value, every setting of the method) -> None, or ValueError naming the setting


@dataclass(frozen=True)
class Setting:
    """One setting: its default, the type of a value (None only where the default is None), its check, its help."""

    name: str
    default: object
    kind: type  # bool, int, float or str
    help: str
    check: Check | None = None
    choices: tuple[str, ...] = ()
    pixels: bool = False  # a length in pixels (warp), never shown as a k/255 pixel value

    def cast(self, value):
        return None if value is None else self.kind(value)


@dataclass(frozen=True)
class Declaration:
    """The settings of one method, in the order they are checked and listed.

    masked: the method adds a perturbation bounded pixel by pixel, so it takes the pool's --mask
    (where it may act) and --eps-glyph (a smaller budget on the glyphs). A geometric method (warp)
    moves every pixel and adds none: it takes neither (check_pool).
    """

    settings: tuple[Setting, ...]
    masked: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.settings)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)

    def defaults(self) -> dict:
        return {s.name: s.default for s in self.settings}

    def derive(self, drop: tuple[str, ...] = (), defaults: dict | None = None,
               add: tuple[Setting, ...] = ()) -> "Declaration":
        """A related method's: some settings left out, some defaults changed, some settings added."""
        kept = tuple(replace(s, default=(defaults or {}).get(s.name, s.default)) for s in self.settings
                     if s.name not in drop)
        return Declaration(kept + add, self.masked)

    def check(self, values: dict, method: str) -> dict:
        """Every setting of `method`: `values` over the defaults, checked in order and cast to their types.

        ValueError names the first setting out of its range, or one `method` does not take (with
        the methods that do).
        """
        for name in values:
            if name not in self:
                raise SettingError(not_taken(name, method))
        full = {**self.defaults(), **values}
        for s in self.settings:
            if full[s.name] is None and s.default is not None:
                raise SettingError(f"{_flag(s.name)}: {method} takes it; give a value (got None)")
            if s.choices and full[s.name] not in s.choices:
                raise SettingError(f"{_flag(s.name)}: must be one of {', '.join(s.choices)} (got {full[s.name]!r})")
            if s.check is not None and full[s.name] is not None:
                s.check(full[s.name], full)
        return {s.name: s.cast(full[s.name]) for s in self.settings}

    def check_pool(self, mask: str, eps_glyph: float | None, method: str) -> None:
        """The pool's mask and glyph budget, for `method`: SettingError naming one it does not take."""
        if self.masked:
            return
        if mask != "full":
            raise SettingError(f"mask: {method} moves the whole captcha and adds no pixel, so it takes mask full "
                               f"only (got {mask!r}); a mask would cut moved strokes at its border")
        if eps_glyph is not None:
            raise SettingError(f"eps-glyph: {method} adds no pixel, so it has no per-pixel budget on the glyphs "
                               f"(got {eps_glyph}); its budget is --displacement, in pixels")


def _flag(name: str) -> str:
    return name.replace("_", "-")


# -- the ranges: the messages name the setting, its bounds and why ----------------------------

def _eps(eps, settings) -> None:
    norm = settings["norm"]
    most = 1.0 if norm == "linf" else MAX_L2_EPS
    if not 0 < eps <= most:
        raise SettingError(f"eps: must be in (0, {most:g}] for {norm} (got {eps}); "
                           + ("pixel values are in [0, 1]" if norm == "linf"
                              else "a larger L2 budget leaves the glyphs unreadable"))


def _alpha(alpha, settings) -> None:
    eps = settings["eps"]
    if not 0 < alpha <= eps:
        raise SettingError(f"alpha: the step size must be in (0, eps] = (0, {eps:.4g}] (got {alpha}); "
                           f"a longer step leaves the budget ball and is projected back; "
                           f"leave it out for 2.5 eps / steps")


def _steps(steps, settings) -> None:
    if not steps >= 1:
        raise SettingError(f"steps: must be at least 1 (got {steps})")


def _generator_dots(dots, settings) -> None:
    if not dots >= 0:
        raise SettingError(f"dots: must be 0 or more (got {dots}); 0 places none")


def _refine_steps(steps, settings) -> None:
    if not steps >= 0:
        raise SettingError(f"steps: refining steps after the generator's forward pass, 0 or more (got {steps})")


def _smoothing(smoothing, settings) -> None:
    if not 0 <= smoothing <= MAX_SMOOTHING:
        raise SettingError(f"smoothing: the Gaussian sigma must be in [0, {MAX_SMOOTHING:g}] pixels, 0 off "
                           f"(got {smoothing})")


def _diversity(diversity, settings) -> None:
    if not 0 <= diversity <= 1:
        raise SettingError(f"diversity: a probability, must be in [0, 1] (got {diversity})")


def _conversions(conversions, settings) -> None:
    if not 0 <= conversions <= 1:
        raise SettingError(f"conversions: a probability, must be in [0, 1] (got {conversions})")


def _decay(decay, settings) -> None:
    if not 0 <= decay <= MAX_DECAY:
        raise SettingError(f"decay: the momentum decay must be in [0, {MAX_DECAY:g}] (got {decay}); "
                           f"0 is plain iterative steps, 1 the paper's")


def _displacement(displacement, settings) -> None:
    if not 0 < displacement <= MAX_DISPLACEMENT:
        raise SettingError(f"displacement: a control point's largest move, must be in (0, {MAX_DISPLACEMENT:g}] "
                           f"pixels (got {displacement}); further, strokes land on their neighbours' places")


def _displacement_step(step, settings) -> None:
    most = settings["displacement"]
    if not 0 < step <= most:
        raise SettingError(f"displacement-step: must be in (0, displacement] = (0, {most:g}] pixels (got {step})")


def _grid(name: str) -> Check:
    def check(points, settings) -> None:
        if not 1 <= points <= MAX_GRID:
            raise SettingError(f"{_flag(name)}: control points of the displacement field, must be 1 to {MAX_GRID} "
                               f"(got {points}); a finer grid is no longer a smooth field")
    return check


def _samples(samples, settings) -> None:
    if not samples >= 1:
        raise SettingError(f"samples: preprocessings averaged per step, must be at least 1 (got {samples})")


def _dots(dots, settings) -> None:
    if not dots >= 1:
        raise SettingError(f"dots: must be at least 1 (got {dots}); with none, use momentum")


def _dot_width(width, settings) -> None:
    if not 3 <= width <= 8:
        raise SettingError(f"dot-width: must be in [3, 8] pixels (got {width}); under 3 a 3x3 opening or median "
                           f"removes a dot, over 8 it covers a stroke")


def _band(band, settings) -> None:
    if not 1 <= band <= MAX_BAND:
        raise SettingError(f"band: must be 1 to {MAX_BAND} pixels off the glyphs (got {band}); further out a dot "
                           f"no longer touches a stroke")


def _dot_rounds(rounds, settings) -> None:
    if not 1 <= rounds <= settings["dots"]:
        raise SettingError(f"dot-rounds: must be 1 to dots = {settings['dots']} (got {rounds}); each round places "
                           f"at least one dot")


def _dot_samples(samples, settings) -> None:
    if not samples >= 1:
        raise SettingError(f"dot-samples: gradients per placement round, must be at least 1 (got {samples})")


# -- the methods ------------------------------------------------------------------------------

# iterative (advCAPTCHA's Eq. 2, BIM/PGD): what the base Attack takes
ITERATIVE = Declaration((
    Setting("norm", "linf", str, "Budget norm.", choices=NORMS),
    Setting("eps", 8 / 255, float, "Budget: radius of the ball around the clean captcha, pixel values in [0, 1] "
                                   "(off the glyphs when --eps-glyph is smaller), e.g. 8/255; on colour captchas, "
                                   "per channel: each of R, G, B moves at most eps.", _eps),
    Setting("alpha", None, float, "Step size.", _alpha),
    Setting("steps", 10, int, "Gradient steps.", _steps),
    Setting("random_start", False, bool, "Start from a random point of the budget ball."),
    Setting("early_stop", True, bool, "Stop a captcha once the substitute misreads it (least change) or spend "
                                      "every step (transfers to other solvers)."),
    Setting("smoothing", 0.0, float, "Gaussian sigma over the gradient (translation-invariant, TI); 0: off.",
            _smoothing),
    Setting("diversity", 0.0, float, "Probability of a random resize-and-pad at each step (input diversity, DI); "
                                     "0: off.", _diversity),
    Setting("conversions", 0.0, float, "Colour captchas: probability at each step of reading through a random grey "
                                       "conversion bots use (BT.601, BT.709, channel mean, the channel of most "
                                       "contrast, HSV saturation or value) instead of the solver's own; 0: off.",
            _conversions),
))
# direct (advCAPTCHA's Eq. 1, FGSM/FGM): one step of eps, so no step size, steps, start or stop
DIRECT = ITERATIVE.derive(drop=("alpha", "steps", "random_start", "early_stop"))
# momentum (MI-FGSM)
MOMENTUM = ITERATIVE.derive(add=(Setting("decay", 1.0, float, "Momentum decay mu: 0 plain steps, 1 the paper's.",
                                         _decay),))
# robust (momentum over random attacker preprocessings): every step spent, since misreading the raw
# captcha says nothing about the preprocessed one
ROBUST = MOMENTUM.derive(drop=("early_stop",), defaults={"steps": 20},
                         add=(Setting("samples", 4, int, "Random attacker preprocessings averaged per step.",
                                      _samples),))

# warp (a smooth displacement field moved by gradient, benchmarks/moving_target.py): geometry, no pixel
# added, so no norm, eps, mask or glyph budget; the benchmark's settings, set once and never tuned
WARP = Declaration((
    Setting("displacement", 3.0, float, "Largest move of a control point of the displacement field along x and "
                                        "along y, pixels (a pixel between them moves at most 1.89 times as far).",
            _displacement, pixels=True),
    Setting("displacement_step", 0.4, float, "Signed gradient step of a control point, pixels.",
            _displacement_step, pixels=True),
    replace(ITERATIVE["steps"], default=20),
    Setting("grid_rows", 3, int, "Control points of the displacement field down the captcha.", _grid("grid_rows")),
    Setting("grid_cols", 8, int, "Control points of the displacement field across the captcha.", _grid("grid_cols")),
    replace(ITERATIVE["diversity"], default=0.7),
), masked=False)

# edge (issue 25): dots in the glyphs' tone on the glyphs' edges, placed by the ensemble's gradient through
# the attacker's clean-up chains, then momentum's dense noise, every step spent
EDGE = MOMENTUM.derive(defaults={"early_stop": False}, add=(
    Setting("dots", 12, int, "Dots per captcha, discs in the glyphs' darkest tone on the glyphs' edges.", _dots),
    Setting("dot_width", 3.5, float, "Dot diameter in pixels (>= 3: a 3x3 opening or median keeps a dot).",
            _dot_width),
    Setting("band", 2, int, "Pixels off the glyphs a dot's centre may lie: it joins the stroke it touches.", _band),
    Setting("dot_rounds", 2, int, "Placement rounds: each reads the gradient once per dot-sample and places "
                                  "an equal share of the dots.", _dot_rounds),
    Setting("dot_samples", 2, int, "Gradients per placement round, each through one sampled clean-up chain.",
            _dot_samples),
    Setting("dot_placement", "gradient", str, "gradient: where a dot raises the loss most; random: the control, "
                                              "random places of the same band.", choices=PLACEMENTS),
))

# warped_edge (issue 26): warp's field, then edge's dots and noise on the warped captcha: one `steps` and `diversity`
# for both stages (warp's 20 steps at 0.4 px reach its 3 px in 8; edge's 14 noise steps there reach it too)
WARPED_EDGE = EDGE.derive(add=tuple(WARP[name] for name in ("displacement", "displacement_step", "grid_rows",
                                                            "grid_cols")))

# generator (issue 27): a trained perturbation generator's forward pass (farm.core.generator), then `steps` momentum
# steps refining it, each as long as one of the recommended's 20 (2.5 eps / 20); the recommended's budget, input
# diversity, smoothing and colour conversions for those steps. Bounded pixel by pixel, so L-inf only.
REFINE_STEP_OF = 20  # the recommended preset's steps: a refining step is one of its steps
GENERATOR = MOMENTUM.derive(
    drop=("norm", "steps", "random_start", "early_stop"),
    defaults={"eps": 32 / 255, "diversity": 0.7, "smoothing": 2.0, "conversions": 0.5},
    add=(Setting("norm", "linf", str, "Budget norm: the generator bounds its output pixel by pixel.",
                 choices=("linf",)),
         Setting("steps", 0, int, f"Momentum steps refining the generator's output, each of 2.5 eps / "
                                  f"{REFINE_STEP_OF} unless --alpha; 0: its forward pass alone.", _refine_steps),
         Setting("dots", None, int, "Dots the generator's dot placer puts on the glyphs' edges (edge's, learned); "
                                    "left out, as many as it was trained to place (none without a placer).",
                 _generator_dots)))

DECLARED: dict[str, Declaration] = {"direct": DIRECT, "iterative": ITERATIVE, "momentum": MOMENTUM, "robust": ROBUST,
                                    "warp": WARP, "edge": EDGE, "warped_edge": WARPED_EDGE, "generator": GENERATOR}
METHOD_NAMES = ("none", *DECLARED)  # none: the clean captchas, a control that takes no setting

# Every setting any method takes, once, in the order options are listed (help and type of the first declaring it)
SETTINGS: dict[str, Setting] = {}
for _declaration in (ITERATIVE, MOMENTUM, ROBUST, DIRECT, WARP, EDGE, WARPED_EDGE, GENERATOR):
    for _setting in _declaration.settings:
        SETTINGS.setdefault(_setting.name, _setting)


def declaration(method: str) -> Declaration:
    """The settings `method` takes ("none" takes none); ValueError lists the known methods."""
    if method == "none":
        return Declaration(())
    if not isinstance(method, str) or method not in DECLARED:
        raise SettingError(f"method: unknown method {method!r}; known: {', '.join(METHOD_NAMES)}")
    return DECLARED[method]


def takers(name: str) -> list[str]:
    """The methods that take setting `name`."""
    return [method for method, declared in DECLARED.items() if name in declared]


def not_taken(name: str, method: str) -> str:
    """The message refusing setting `name` for `method`, naming the methods that take it."""
    who = takers(name)
    if not who:
        return f"{_flag(name)}: no method takes it (settings: {', '.join(map(_flag, SETTINGS))})"
    return f"{_flag(name)}: only {listed(who)} take{'s' if len(who) == 1 else ''} it, not {method}; leave it out"


def listed(names: list[str]) -> str:
    """a, b and c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
