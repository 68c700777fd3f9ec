"""`farm preview`: a contact sheet of a pool, clean | adversarial | amplified perturbation."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import fail, open_store_or_fail, store_option


@click.command()
@click.option("--pool", required=True, help="Pool to show.")
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 1000),
              help="Captchas on the sheet (a row each).")
@click.option("-o", "--output", default="sheet.png", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@store_option
def preview(pool, count, output, store_url):
    """Write a contact sheet: clean | adversarial | amplified perturbation, with answer and reading."""
    from PIL import Image

    from farm.exceptions import FarmError
    from farm.ops.preview import contact_sheet, pool_pairs

    if not output.parent.is_dir():  # checked before the pool is read
        fail(f"--output: the directory {output.parent} does not exist; create it or write the sheet elsewhere")
    if output.suffix.lower() not in Image.registered_extensions():
        fail(f"--output: {output.name} needs an image extension such as .png")
    try:
        sheet = contact_sheet(pool_pairs(open_store_or_fail(store_url), pool, count), title=f"{pool}: clean | adversarial | perturbation x8")
    except (FarmError, ValueError) as e:
        fail(str(e))
    try:
        sheet.save(output)
    except OSError as e:
        fail(f"--output: cannot write {output} ({e.strerror or e})")
    click.echo(f"wrote {output} ({count} captchas of {pool})")
