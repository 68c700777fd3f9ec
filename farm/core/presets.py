"""Named settings a pool is made with, expanded alike for `farm generate`, PoolSpec and a task's spec.

A preset names a method, the settings it changes from that method's own defaults
(farm.core.attacks.settings) and the pool's mask, glyph budget and donor ensemble. The settings belong to the
method: a spec that names another method keeps the preset's mask and glyph budget but takes
that method's own defaults, so `--method iterative` never carries momentum's input diversity.
Torch-free, like the declarations: the CLI shows a preset's values in its help.
"""

from __future__ import annotations

from farm.core.attacks.settings import DECLARED, SETTINGS, Declaration, declaration, not_taken
from farm.core.colour import check_mode
from farm.exceptions import SettingError

__all__ = ["PRESETS", "DEFAULT_PRESET", "METHOD_PRESETS", "PRESET_FIELDS", "COLOUR", "expand", "preset_value",
           "describe", "shown"]

COLOUR = "colour"  # a preset's values for colour schemes (mode RGB), over its own
PRESETS: dict[str, dict] = {
    # The setting that transferred best to the zoo's donors, chosen with benchmarks/transfer.py on donor
    # solvers only (held-out solvers report it, never choose it): momentum with input diversity and
    # smoothed (translation-invariant) gradients, every step spent, 32/255 off the glyphs and 8/255 on them.
    # On colour captchas (issue 28) half its steps read through a random grey conversion bots use (conversions
    # 0.5, chosen on the donors with benchmarks/colour.py: 1.0 read the same after clean-up and more as served;
    # 0 leaves HSV saturation thresholding 75-81%); grey captchas draw nothing for it, so their bytes are unchanged.
    "recommended": {"method": "momentum", "mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255, "steps": 20,
                    "diversity": 0.7, "smoothing": 2.0, "early_stop": False, "conversions": 0.5},
    # advCAPTCHA's plain iterative method (Shi et al. 2020): 8/255 in 10 steps off the glyphs, early stop.
    "paper": {"method": "iterative", "mask": "background"},
    # Geometry instead of noise, for a generation a bot adapted on the noise has not learned (issue 26,
    # benchmarks/moving_target.py): a bot adapted on 3,000 labelled recommended captchas reads ~25% of
    # these, as an unadapted one does; one adapted on these reads 0-2% of recommended. The warp
    # method's own defaults (3 px, 3x8 control points, 20 steps, input diversity 0.7), never tuned.
    "warp": {"method": "warp", "mask": "full"},
    # Issue 25: 12 dots on the glyphs' edges, placed by the gradient of the substitute and two donors through
    # the attacker's clean-up chains, then the recommended noise through the substitute alone. Settings chosen
    # on donors with benchmarks/ink_research.py, reported on held-out solvers (README, "Measured").
    # 14 noise steps, not 20, pay for the placement's 2 rounds x 2 gradients of three models.
    # On colour (issue 28, benchmarks/colour.py): 8 dots, 24/255 of noise, half its steps through a bot's grey
    # conversions. Dots in the glyphs' colour survive the channel of most contrast that gives back what noise takes;
    # less noise keeps the glyphs' colour SSIM over 0.85 (32/255: 0.83); of those that do, the donors read least here.
    "edge": {"method": "edge", "mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255, "steps": 14,
             "diversity": 0.7, "smoothing": 2.0, "early_stop": False, "ensemble": ("crnn-b", "resnet-a"),
             COLOUR: {"dots": 8, "eps": 24 / 255, "conversions": 0.5}},
    # Issue 26: warp's field, then edge's dots and noise on the warped captcha, at edge's settings (and warp's own):
    # the family a bot that learned geometry and ink apart has not seen (farm.core.families).
    "warped_edge": {"method": "warped_edge", "mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255, "steps": 14,
                    "diversity": 0.7, "smoothing": 2.0, "early_stop": False, "ensemble": ("crnn-b", "resnet-a"),
                    COLOUR: {"dots": 8, "eps": 24 / 255, "conversions": 0.5}},
    # Issue 27: a trained generator's forward pass stands in for the default pools, so it is bound as they are:
    # the recommended's two-level budget on grey, the ink family's 24/255 off the glyphs on colour (its dot placer
    # puts the ink family's dots). Its other settings are the method's own (farm.core.attacks.settings.GENERATOR).
    "generator": {"method": "generator", "mask": "full", "eps": 32 / 255, "eps_glyph": 8 / 255,
                  COLOUR: {"eps": 24 / 255}},
}
DEFAULT_PRESET = "recommended"
METHOD_PRESETS = {"generator": "generator"}  # a method named alone takes this preset, not the default's mask and budget

# The fields of a spec a preset fills: the method, every method's settings, and the pool's mask, glyph budget, donors
PRESET_FIELDS = ("method", *SETTINGS, "mask", "eps_glyph", "ensemble")
_POOL_DEFAULTS = {"mask": "background", "eps_glyph": None, "ensemble": ()}  # a preset that leaves them out


def _preset(name: str, mode: str = "L") -> dict:
    """Preset `name`'s values for a scheme of `mode`: on colour, its colour values over its own."""
    if not isinstance(name, str) or name not in PRESETS:
        raise SettingError(f"preset: unknown preset {name!r}; known: {', '.join(PRESETS)}")
    check_mode(mode)
    preset = {k: v for k, v in PRESETS[name].items() if k != COLOUR}
    return {**preset, **PRESETS[name].get(COLOUR, {})} if mode == "RGB" else preset


def expand(name: str, given: dict, strict: bool = True, mode: str = "L") -> dict:
    """Every field of PRESET_FIELDS: those `given`, then the preset's, then the method's own defaults.

    The preset's settings apply only to its own method; its mask and glyph budget to any that takes
    them (a geometric method, warp, takes neither: mask full, no glyph budget); its ensemble to any. The glyph
    budget applies where it is smaller than eps under L-inf (given, it is kept and checked by
    PoolSpec.validate). A setting the method does not take is None; given, it is refused (strict)
    or kept unused (not strict: a spec built as before presets). `mode`: the scheme's (a preset's colour values
    apply on "RGB").
    """
    preset = _preset(name, mode)
    method = given.get("method", preset["method"])
    if strict:
        declared = declaration(method)  # ValueError for an unknown method
    else:  # PoolSpec.validate names an unknown method later
        declared = DECLARED.get(method, Declaration(())) if isinstance(method, str) else Declaration(())
    own = preset if method == preset["method"] else {}
    fields = {"method": method}
    for setting in SETTINGS:
        if setting in given:
            if strict and setting not in declared:
                raise SettingError(not_taken(setting, method))
            fields[setting] = given[setting]
        elif setting in declared:
            fields[setting] = own.get(setting, declared[setting].default)
        else:
            fields[setting] = None
    # a method that takes no mask (warp) acts on the whole captcha, whatever the preset's mask
    fields["mask"] = given.get("mask", preset.get("mask", _POOL_DEFAULTS["mask"]) if declared.masked else "full")
    ensemble = given.get("ensemble", preset.get("ensemble", _POOL_DEFAULTS["ensemble"]))
    fields["ensemble"] = tuple(ensemble) if isinstance(ensemble, list) else ensemble  # else PoolSpec.validate names it
    if "eps_glyph" in given:
        fields["eps_glyph"] = given["eps_glyph"]
    else:
        glyph, eps = preset.get("eps_glyph"), fields["eps"]
        number = isinstance(eps, (int, float)) and not isinstance(eps, bool)  # else PoolSpec.validate names it
        fields["eps_glyph"] = glyph if glyph is not None and fields["norm"] == "linf" and number and eps > glyph \
            else None
    if strict:
        declared.check_pool(fields["mask"], fields["eps_glyph"], method)
    return fields


def preset_value(name: str, field: str):
    """What preset `name` gives `field` when nothing else is given (its method's own default where it says nothing)."""
    return expand(name, {})[field]


def describe(name: str) -> str:
    """One line: the preset's method and what it changes from that method's defaults (and on colour schemes)."""
    def listed(values: dict) -> list[str]:
        return [f"{k.replace('_', '-')} {shown(v, k in SETTINGS and SETTINGS[k].pixels)}" for k, v in values.items()
                if k != "method"]
    preset = _preset(name)
    line = ", ".join([preset["method"], *listed(preset)])
    colour = PRESETS[name].get(COLOUR)
    return f"{line}; on colour schemes {', '.join(listed(colour))}" if colour else line


def shown(value, pixels: bool = False) -> str:
    """A value as the CLI takes it: 8/255 for a budget on the 8-bit grid (not a length in pixels), on/off for a
    switch."""
    if isinstance(value, tuple):
        return "+".join(value)
    if not pixels and isinstance(value, float) and 0 < value < 1 and abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    return ("on" if value else "off") if isinstance(value, bool) else str(value)
