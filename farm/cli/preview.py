"""`farm preview`: a contact sheet of a pool, clean | adversarial | amplified perturbation."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import open_store, store_option
from farm.exceptions import SettingError


@click.command()
@click.option("--pool", required=True, help="Pool to show.")
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 1000),
              help="Captchas on the sheet (a row each).")
@click.option("-o", "--output", default="sheet.png", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@store_option
def preview(pool, count, output, store_url):
    """Write a contact sheet: clean | adversarial | amplified perturbation, with answer and reading."""
    from PIL import Image

    from farm.ops.preview import contact_sheet, pool_pairs

    if not output.parent.is_dir():  # checked before the pool is read
        raise SettingError(f"--output: the directory {output.parent} does not exist; create it or write the sheet "
                           f"elsewhere")
    if output.suffix.lower() not in Image.registered_extensions():
        raise SettingError(f"--output: {output.name} needs an image extension such as .png")
    sheet = contact_sheet(pool_pairs(open_store(store_url), pool, count),
                          title=f"{pool}: clean | adversarial | perturbation x8")
    try:
        sheet.save(output)
    except OSError as e:
        raise SettingError(f"--output: cannot write {output} ({e.strerror or e})") from e
    click.echo(f"wrote {output} ({count} captchas of {pool})")
