"""The `farm` command: train and evaluate substitutes, read captchas, generate adversarial pools."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import click

from farm import __version__

DEFAULT_SEED = 2026


def _json_out(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="farm")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """captchafarm: adversarial text captchas that solving bots misread and people still read.

    Runs embedded by default: a local folder as object store (FARM_STORE, default ./farm-data)
    and the substitute solver bundled with the package.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint folder to write (model.safetensors, card.json, train-state/).")
@click.option("--mix", default="classic=0.45,lines=0.2,wave=0.35", show_default=True,
              help="Schemes and their weights in the training data.")
@click.option("--samples", default=200_000, show_default=True, help="Distinct captchas rendered for training.")
@click.option("--steps", default=14_000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option("--seed", default=0, show_default=True, help="Seeds the data, the weights and the order.")
@click.option("--workers", default=2, show_default=True, help="Processes that render the training set.")
@click.option("--eval-every", default=1000, show_default=True, help="Steps between validation and saved state.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/train-state when it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def train(out, mix, samples, steps, batch_size, lr, seed, workers, eval_every, resume, as_json):
    """Train a CRNN substitute on a mix of freshly rendered schemes."""
    from farm.train import TrainConfig, parse_mix, train as run

    try:
        config = TrainConfig(mix=parse_mix(mix), samples=samples, steps=steps, batch_size=batch_size, lr=lr,
                             seed=seed, workers=workers, eval_every=eval_every)
    except ValueError as e:
        _fail(str(e))
    command = "farm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = run(config, out, resume=resume, command=command)
    if as_json:
        _json_out(card)
    else:
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["metrics"]["accuracy"].items())
        click.echo(f"wrote {out} in {card['training']['seconds']:.0f} s; accuracy: {acc}")


if __name__ == "__main__":
    main()
