"""`farm generator`: train the perturbation generator the `generator` method runs (issue 27)."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option

_DEFAULT_WORK = Path("generator-runs")


@click.group()
def generator():
    """A trained perturbation generator: adversarial captchas at one forward pass each (--method generator)."""


@generator.command()
@click.option("--steps", default=1500, show_default=True, help="Training steps (each 2 codes x --batch-size captchas).")
@click.option("--captchas", default=4000, show_default=True,
              help="Distinct training captchas, rendered once under a training secret (never a pool's).")
@click.option("--batch-size", default=16, show_default=True, help="Captchas a step.")
@click.option("--donor", "donors", multiple=True, default=("crnn-b", "resnet-a"), show_default=True,
              help="Zoo donor trained against beside the substitute, its card's donors and hardened copies "
                   "(repeatable; held-out solvers are refused).")
@click.option("--no-donors", is_flag=True, help="Train against the substitute (and its card's donors) alone.")
@click.option("--scheme", default="classic", show_default=True,
              help="Scheme of the training captchas; a colour scheme's generator reads and perturbs each channel.")
@click.option("--dots", type=click.IntRange(min=0), default=None,
              help="Dots its placer learns to put on the glyphs' edges, distilled from edge's gradient placement "
                   "(0: no placer).  [default: as the scheme's default pool: edge's 8 on colour, none on grey]")
@click.option("--seed", default=0, show_default=True, help="Seeds the network, the captchas' order and the codes.")
@click.option("--cpu-minutes", type=float, default=None,
              help="Stop once this process has used this much CPU; run again to resume, nothing is published "
                   "until the last step.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=_DEFAULT_WORK, show_default=True,
              help="Folder of the run's resumable state, one subfolder per version trained against.")
@click.option("--restart", is_flag=True, help="Start over instead of resuming a run found in --work.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def train(steps, captchas, batch_size, donors, no_donors, scheme, dots, seed, cpu_minutes, work, restart, store_url,
          as_json):
    """Train a generator against CURRENT and publish it beside CURRENT's weights as a new version.

    The generator reads a captcha, its glyph mask and a random code, and writes a perturbation within the pool's
    budgets and mask (on colour schemes, one per channel, trained through the grey conversions bots use); its dot
    placer, distilled from edge's gradient placement, first puts dots on the glyphs' edges as the default colour
    pools do. Trained once against the substitute, the donors and the hardened copies CURRENT aims at, it
    then costs one forward pass a captcha (`farm generate --method generator`, `--steps K` to refine it by K
    gradient steps). The new version keeps CURRENT's weights, card and generation and becomes CURRENT; workers
    pick it up as they pick up any checkpoint. A run stopped (--cpu-minutes, or killed) resumes where it stopped
    when run again. About 15 CPU-minutes (one thread) at the defaults.
    """
    from farm.ops.generator_training import GeneratorTraining, train_for_store

    config = GeneratorTraining(steps=steps, captchas=captchas, batch_size=batch_size, scheme=scheme, seed=seed,
                               dots=dots, ensemble=() if no_donors else tuple(donors), cpu_minutes=cpu_minutes)
    result = train_for_store(open_store(store_url), config, work, progress=not as_json, restart=restart)
    if as_json:
        json_out(result)
    elif result["complete"]:
        click.echo(f"published {result['version']} (now CURRENT): {result['base']}'s weights with a generator trained "
                   f"{result['steps']} steps against {', '.join(result['solvers'])} in "
                   f"{result['cpu_seconds'] / 60:.1f} CPU-min; `farm generate --method generator` uses it")
    else:
        click.echo(f"stopped at step {result['steps']} of {steps} (--cpu-minutes); nothing published; run the same "
                   f"command again to resume from {result['state']}")
