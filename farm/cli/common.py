"""Helpers every `farm` command shares: JSON output, the store, the substitute, common options.

Errors are not handled here: a command lets the library's FarmError rise and farm.cli.FarmGroup
prints it (see farm/cli/__init__.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

__all__ = ["json_out", "Fraction", "open_store", "substitute", "store_option", "checkpoint_option",
           "version_option"]


def json_out(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _fraction(value: str) -> float:
    """'8/255' or '0.03' -> float."""
    try:
        if "/" in value:
            top, bottom = value.split("/", 1)
            return float(top) / float(bottom)
        return float(value)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a number or a fraction like 8/255") from None


class Fraction(click.ParamType):
    name = "NUMBER"

    def convert(self, value, param, ctx):
        return value if isinstance(value, float) else _fraction(str(value))


def open_store(url: str | None):
    """The store at `url` (--store / FARM_STORE, default ./farm-data); SettingError for a URL that is no store."""
    from farm.storage.store import open_store as open_url
    return open_url(url)


def substitute(store_url: str | None, checkpoint: Path | None, version: str | None, publish: bool = False):
    """The solver to use: a checkpoint folder, a registry version, the store's CURRENT, or the bundled one."""
    from farm.core.checkpoint import load_solver, load_solver_dir
    from farm.storage import registry
    from farm.storage.config import device

    if checkpoint:
        return load_solver_dir(checkpoint, device=device())
    store = open_store(store_url) if (version or publish or store_url or _has_store()) else None
    if store is not None and (version or publish or registry.current(store)):
        if publish and not version:
            registry.ensure_current(store)  # a write path: the bundled substitute becomes v1 of an empty store
        return registry.load(store, version, device=device())
    weights, card = registry.bundled()
    return load_solver(weights, card, device=device())


def _has_store() -> bool:
    from farm.storage.store import DEFAULT_STORE
    url = os.environ.get("FARM_STORE", DEFAULT_STORE)
    return url.startswith("s3://") or Path(url.removeprefix("file://")).exists()


store_option = click.option("--store", "store_url", envvar="FARM_STORE", default=None,
                            help="Object store: file:///path or s3://bucket/prefix "
                                 "[env FARM_STORE; default ./farm-data].")
checkpoint_option = click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path),
                                 help="Read with this checkpoint folder instead of the store's CURRENT.")
version_option = click.option("--version", "version", default=None, help="Read with this registry version.")
