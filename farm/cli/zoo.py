"""`farm zoo`: the solvers that judge transfer, donors and held-out."""

from __future__ import annotations

import json

import click

from farm.cli.common import json_out
from farm.exceptions import SettingError


@click.group()
def zoo():
    """Solvers trained independently of the substitute: donors and held-out judges of transfer."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json):
    """List zoo solvers, their role, architecture and clean accuracy (when trained)."""
    from farm.core.zoo import members, zoo_path

    rows = []
    for m in members():
        card_path = zoo_path() / m.name / "card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else None
        rows.append({"name": m.name, "role": m.role, "architecture": m.architecture, "description": m.description,
                     "trained": card is not None,
                     "accuracy": card["metrics"]["accuracy"] if card else None, "command": m.command()})
    if as_json:
        json_out(rows)
        return
    for r in rows:
        acc = ", ".join(f"{k} {v:.1%}" for k, v in (r["accuracy"] or {}).items()) or f"not trained: {r['command']}"
        click.echo(f"{r['name']:14s} {r['role']:9s} {r['architecture']:16s} {acc}")


@zoo.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Train every zoo solver that is not trained yet.")
def train(names, all_):
    """Train zoo solvers by name (the exact recipes that made the shipped ones)."""
    from farm.core.zoo import member, members, zoo_path
    from farm.ops.train import train_member

    chosen = [member(n) for n in names]
    if all_:
        chosen += [m for m in members() if not (zoo_path() / m.name / "card.json").exists()]
    if not chosen:
        raise SettingError("name zoo solvers to train, or use --all (see `farm zoo list`)")
    for m in chosen:
        card = train_member(m.name)
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["metrics"]["accuracy"].items())
        click.echo(f"{m.name}: {acc} in {card['training']['seconds']:.0f} s")
