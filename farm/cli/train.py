"""`farm train`: a substitute solver from scratch, on a mix of schemes and a platform's own captchas."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from farm.cli.common import json_out


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint folder to write (model.safetensors, card.json, train-state/).")
@click.option("--mix", default="classic=0.7,lines=0.15,wave=0.15", show_default=True,
              help="Schemes and their weights in the training data.")
@click.option("--samples", default=240_000, show_default=True, help="Distinct captchas rendered for training.")
@click.option("--steps", default=12_000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option("--seed", default=0, show_default=True, help="Seeds the data, the weights and the order.")
@click.option("--workers", default=2, show_default=True, help="Processes that render the training set.")
@click.option("--eval-every", default=1000, show_default=True, help="Steps between validation and saved state.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/train-state when it exists.")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="A folder of the platform's captchas with their answers (labels.jsonl, labels.csv or the "
                   "file names; see docs/schemes.md), mixed into every batch.")
@click.option("--data-weight", default=0.5, show_default=True,
              help="Share of each batch from --data; 1 trains on the folder alone (--mix unused).")
@click.option("--alphabet", default=None,
              help="What the model reads: default, digits, upper, lower, lower+digits, mixed, or the characters "
                   "themselves [default: the alphabet of --mix's schemes]. Answers in one case are read "
                   "case-blind when the alphabet has only that case.")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def train(out, mix, samples, steps, batch_size, lr, seed, workers, eval_every, resume, data, data_weight, alphabet,
          as_json):
    """Train a CRNN substitute on a mix of freshly rendered schemes and, with --data, a platform's own captchas.

    \b
    farm train --out sub                                     the bundled recipe (25 min on 2 cores)
    farm train --out sub --data mine/ --data-weight 1 --alphabet lower+digits --steps 4000
    """
    from farm.ops.train import TrainConfig, parse_mix, train as run

    config = TrainConfig(mix=parse_mix(mix), samples=samples, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         workers=workers, eval_every=eval_every, data=data, data_weight=data_weight,
                         alphabet=alphabet).validate()
    card = run(config, out, resume=resume, command="farm " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if as_json:
        json_out(card)
    else:
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["metrics"]["accuracy"].items())
        click.echo(f"wrote {out} in {card['training']['seconds']:.0f} s; accuracy: {acc}")
