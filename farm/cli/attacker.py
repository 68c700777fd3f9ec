"""`farm attacker`: simulated bots that answer pools, to measure model extraction end to end."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option

_folder = click.Path(file_okay=False, path_type=Path)


@click.group()
def attacker():
    """Simulated attackers: train a bot, let it answer a pool, adapt it to adversarial captchas."""


@attacker.command()
@click.option("--out", type=_folder, required=True, help="Folder for the bot (model.safetensors, card.json).")
@click.option("--quick", is_flag=True, help="A smaller bot (half the steps): for benchmarks in a hurry.")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def train(out, quick, as_json):
    """Train a bot on clean `classic` captchas, apart from the substitute (own seed, ResNet architecture)."""
    from farm.ops.attacker import RECIPES, train_attacker

    card = train_attacker(out, RECIPES["quick" if quick else "full"])
    if as_json:
        json_out(card)
    else:
        click.echo(f"wrote {out}: classic {card['metrics']['accuracy']['classic']:.1%} clean")


@attacker.command()
@click.option("--attacker", "folder", type=_folder, required=True, help="The bot's folder.")
@click.option("--pool", required=True, help="Pool whose captchas the bot answers.")
@click.option("--count", default=None, type=int, help="Answer the pool's first COUNT captchas [default: all].")
@click.option("--risk", default="attacker", show_default=True, help="Risk rating written on each record.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Answer file (JSON lines), ready for `farm answers ingest`.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the count and the bot's accuracy as JSON.")
def answer(folder, pool, count, risk, out, store_url, as_json):
    """Let the bot answer a pool and write the records a platform would report for a flagged user."""
    from farm.ops.attacker import answer_pool, write_answers
    from farm.core.checkpoint import load_solver_dir

    bot = load_solver_dir(folder)
    result = answer_pool(open_store(store_url), pool, bot, count, risk)
    write_answers(out, result["records"])
    summary = {"out": str(out), "count": result["count"], "accuracy": round(result["accuracy"], 4)}
    if as_json:
        json_out(summary)
    else:
        click.echo(f"wrote {result['count']} answers to {out}; the bot read {result['accuracy']:.1%} correctly")


@attacker.command()
@click.option("--attacker", "folder", type=_folder, required=True, help="The bot to adapt.")
@click.option("--pool", "pools", multiple=True, required=True, help="Pool of labelled captchas (repeatable).")
@click.option("--count", default=5000, show_default=True, help="Labelled adversarial captchas to retrain on.")
@click.option("--steps", default=600, show_default=True, help="At most this many steps.")
@click.option("--out", type=_folder, required=True, help="Folder for the adapted bot.")
@store_option
def adapt(folder, pools, count, steps, out, store_url):
    """Retrain the bot on labelled adversarial captchas, as its operator would after being blocked."""
    from farm.ops.attacker import adapt as run
    from farm.core.checkpoint import load_solver_dir

    bot = load_solver_dir(folder)
    card = run(bot, open_store(store_url), list(pools), count, out, steps)
    click.echo(f"wrote {out} (best step {card['adapted']['best_step']})")
