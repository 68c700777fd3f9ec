"""Command groups of `farm` beyond the core verbs in farm.cli, one module per noun."""

from __future__ import annotations

import importlib

import click

# modules that define a click command or group named like the module (e.g. checkpoint.checkpoint)
GROUPS = ("checkpoint", "pool", "answers", "zoo")


def register_all(main: click.Group) -> None:
    for name in GROUPS:
        try:
            module = importlib.import_module(f"farm.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"farm.commands.{name}":
                raise
            continue
        main.add_command(getattr(module, name))
