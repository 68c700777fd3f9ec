"""`farm generate`: a pool of adversarial captchas, embedded or on the farm.

Its attack options are built from the settings each method declares (farm.core.attacks.settings)
and default to a preset's (farm.core.presets), as PoolSpec and a task's spec do.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click
from click.core import ParameterSource

from farm.cli.common import Fraction, checkpoint_option, json_out, open_store, store_option, substitute, \
    version_option
from farm.core.attacks.settings import DECLARED, METHOD_NAMES, SETTINGS, Setting, listed, takers
from farm.core.families import DEFAULT_FAMILIES, FAMILIES
from farm.core.presets import DEFAULT_PRESET, PRESETS, describe, preset_value, shown


def _setting_option(setting: Setting):
    """The option of one declared setting, showing the default preset's value (or its first taker's own)."""
    flag = "--" + setting.name.replace("_", "-")
    who = takers(setting.name)
    text = setting.help if len(who) == len(DECLARED) else f"{setting.help.rstrip('.')} ({listed(who)} only)."
    default = preset_value(DEFAULT_PRESET, setting.name)
    if default is None and setting.default is not None:  # the preset's method does not take it
        default = DECLARED[who[0]][setting.name].default
    shown_default = {"show_default": "2.5 eps / steps"} if default is None else \
        {"default": shown(default, setting.pixels) if setting.kind is float else default, "show_default": True}
    if setting.kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", setting.name, help=text, **shown_default)
    kind = click.Choice(setting.choices) if setting.choices else Fraction() if setting.kind is float else setting.kind
    return click.option(flag, setting.name, type=kind, help=text, **shown_default)


_GATHERED = ("preset", "method", *SETTINGS, "mask", "eps_glyph")


def preset_options(command):
    """--preset, --method, an option per declared setting, --mask and --eps-glyph, gathered into `settings`.

    `settings` holds the preset's name and only the options given on the command line (their
    defaults are for --help), for PoolSpec.from_preset: a setting left out takes the preset's
    value, or another method's own default.
    """
    @functools.wraps(command)
    def gathered(*args, **kwargs):
        source = click.get_current_context().get_parameter_source
        given = {name: kwargs.pop(name) for name in _GATHERED}
        settings = {k: v for k, v in given.items() if k == "preset" or source(k) is not ParameterSource.DEFAULT}
        return command(*args, settings=settings, **kwargs)

    options = [
        click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
                     show_default=f"the generation's family's: {', '.join(f'{p} for {f}' for f, p in FAMILIES.items())}"
                                  f"; {DEFAULT_PRESET} with --method",
                     help="Named setting the options below default to: "
                          + "; ".join(f"{name} ({describe(name)})" for name in PRESETS)
                          + ". Options given override it; another --method than the preset's takes its own defaults. "
                            "Left out, the preset of the family of the substitute's generation (`farm checkpoint "
                            "list`), which the farm's move (`farm finetune`) chooses; a generation that names none "
                            "is of " + " and ".join(f"{family} on {'colour' if mode == 'RGB' else 'grey'} captchas"
                                                    for mode, family in DEFAULT_FAMILIES.items()) + "."),
        click.option("--method", type=click.Choice(METHOD_NAMES), default=preset_value(DEFAULT_PRESET, "method"),
                     show_default=True, help="none (clean control), direct, iterative, momentum, robust (pixel noise), "
                                                 "warp (geometry: a smooth displacement field), edge (dots on the "
                                                 "glyphs' edges, then noise) or generator (one forward pass of the "
                                                 "version's trained generator, `farm generator train`; --steps K "
                                                 "refines it)."),
        *(_setting_option(setting) for setting in SETTINGS.values()),
        click.option("--mask", default=preset_value(DEFAULT_PRESET, "mask"), show_default=True,
                     help="full, background, glyph, strokes (random curves off the glyphs), or a PNG of the "
                          "scheme's size (white = may change). warp moves the whole captcha: full only."),
        click.option("--eps-glyph", "eps_glyph", type=Fraction(),
                     show_default=f"{shown(preset_value(DEFAULT_PRESET, 'eps_glyph'))} when --norm linf and --eps is "
                                  f"larger; else none",
                     help="L-inf budget on the glyphs (dilated by --margin), smaller than --eps off them (not warp)."),
    ]
    for option in reversed(options):
        gathered = option(gathered)
    return gathered


@click.command()
@click.option("--pool", required=True, help="Pool name (letters, digits, - _ .).")
@click.option("--count", type=int, help="Captchas in the pool (required, except with --source: all of the folder).")
@click.option("--scheme", default="classic", show_default=True, help="Captcha scheme (see `farm schemes`).")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="Perturb a platform's own captchas instead of rendering a scheme: a folder of images with "
                   "their answers (labels.jsonl, labels.csv or the file names; see docs/schemes.md). It is "
                   "copied into the store so farm workers read it too.")
@preset_options
@click.option("--margin", default=1, show_default=True, help="Background mask: pixels kept clear around glyphs.")
@click.option("--ensemble", multiple=True, help="Zoo donor attacked together with the substitute (repeatable; "
                                               "default: the preset's, edge's places its dots through crnn-b and "
                                               "resnet-a).")
@click.option("--shard-size", default=256, show_default=True, help="Captchas per shard (unit of work and of resume).")
@click.option("--seed", default=0, show_default=True, help="Same seed, scheme and count: same clean captchas.")
@checkpoint_option
@version_option
@store_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
@click.option("--no-wait", is_flag=True, help="Farm only (FARM_BROKER): queue the shards, print the job id, return.")
def generate(pool, count, scheme, source, settings, margin, ensemble, shard_size, seed, checkpoint, version,
             store_url, no_progress, as_json, no_wait):
    """Generate a pool of adversarial captchas (re-run with the same arguments to complete it).

    Settings default to the --preset's; an option a method does not take is refused. With
    FARM_BROKER set the farm's workers generate it: with the version named by --version or
    --checkpoint (published), kept to by every shard, else with CURRENT as each shard starts.
    """
    from farm.core.families import base_preset
    from farm.core.spec import MASKS, PoolSpec, scheme_mode
    from farm.exceptions import SettingError
    from farm.storage.folder import folder_mode
    from farm.storage.layout import check_pool_name

    if count is None and source is None:
        raise SettingError("--count: how many captchas the pool holds (only --source pools default to the whole "
                           "folder)")
    check_pool_name(pool)
    pool_fields = dict(count=1 if count is None else count, scheme=scheme, margin=margin, seed=seed,
                       shard_size=shard_size, **({"ensemble": tuple(ensemble)} if ensemble else {}))
    preset = settings.pop("preset")
    mode = folder_mode(source) if source is not None else scheme_mode(scheme)  # a preset's colour values, family
    if preset is None and "method" not in settings:  # the preset of the generation's family (one card read)
        # the pool's own fields first: reading the family loads the registry, and with it torch
        PoolSpec.from_preset(DEFAULT_PRESET, **pool_fields).validate()
        preset = base_preset(_family(store_url, checkpoint, version, mode), None, settings)
    spec = PoolSpec.from_preset(preset or DEFAULT_PRESET, mode, **pool_fields, **settings)
    if source is not None and spec.mask not in MASKS:
        raise SettingError("--mask: a --source pool takes full, background, glyph or strokes; give glyph masks as "
                           "<image>.mask.png in the folder")
    spec.validate()
    farm = os.environ.get("FARM_BROKER")
    if no_wait and not farm:
        raise SettingError("--no-wait: needs the farm (set FARM_BROKER); an embedded run generates in this process")
    # torch and the attacks load only now: a mistyped argument is refused in a second, not after them
    from farm.ops.local_runner import LocalRunner
    from farm.ops.shard import attack_solvers
    from farm.ops.submit import farm_runner, job_substitute, submit
    from farm.storage.config import device, secret
    from farm.storage.jobs import PINNED

    store = open_store(store_url)
    if farm:  # the farm's queue, found by entry point; its workers load the model, this process names it
        runner = farm_runner()
        chosen, follows = job_substitute(store, checkpoint, version)
    else:
        chosen, follows = substitute(store_url, checkpoint, version, publish=True), PINNED
    if source is not None:
        spec = _source_spec(spec, source, count, store, chosen)
    if not farm:
        runner = LocalRunner(attack_solvers(spec, chosen, device()), secret(store), device())
    summary = submit(store, pool, spec, chosen, runner, follows=follows, wait=not no_wait,
                     progress=not (no_progress or as_json))
    if as_json:
        json_out(summary)
        return
    if no_wait:
        click.echo(f"job {summary['job']}: {summary['queued_shards']} shards of pool {pool} queued; "
                   f"follow it with `farm job status {summary['job']}`")
        return
    click.echo(f"pool {pool}: {summary['count']} captchas in {summary['store']} "
               f"({summary['generated']} new, {summary['captchas_per_second']:.1f}/s)")
    if summary["generated"]:
        aimed = [f"{label} {', '.join(names)}" for label, names in (("donors", summary.get("donors")),
                                                                    ("hardened copies", summary.get("hardened")),
                                                                    ("the generator of", [summary.get("generator")]))
                 if names and names[0]]
        donors = f" (with {'; '.join(aimed)})" if aimed else ""
        click.echo(f"substitute {summary['substitute']}{donors} reads {summary['substitute_accuracy_clean']:.1%} "
                   f"clean -> {summary['substitute_accuracy_adversarial']:.1%} adversarial; "
                   f"mean SSIM {summary['mean_ssim']:.3f}, mean L-inf {summary['mean_linf'] * 255:.1f}/255")


def _family(store_url, checkpoint: Path | None, version: str | None, mode: str) -> str:
    """The family of the substitute a pool of `mode` captchas is made with: a checkpoint folder's card, a version's,
    or CURRENT's."""
    from farm.core.checkpoint import read_solver_dir
    from farm.core.families import card_family
    from farm.storage import registry

    if checkpoint is not None:
        return card_family(read_solver_dir(checkpoint)[1], mode)
    return registry.family(open_store(store_url), version, mode)


def _source_spec(spec, source: Path, count: int | None, store, solver):
    """The spec of a pool perturbing a folder's captchas, once the folder is checked and in the store."""
    from dataclasses import replace

    from farm.core.spec import FOLDER
    from farm.exceptions import SettingError
    from farm.storage.folder import import_source, read_folder

    data = read_folder(source, solver.charset)  # answers must be in the substitute's alphabet
    for note in data.notes:
        click.echo(f"source {data.name}: {note}", err=True)
    if count is not None and count > len(data.texts):
        raise SettingError(f"--count: {source} holds {len(data.texts)} captchas, fewer than {count}")
    return replace(spec, scheme=FOLDER, source=import_source(store, data), count=count or len(data.texts))
