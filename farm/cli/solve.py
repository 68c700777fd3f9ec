"""`farm solve`: read captcha images with a substitute, as a bot would."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import checkpoint_option, json_out, store_option, substitute, version_option
from farm.exceptions import SettingError


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@checkpoint_option
@version_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, text}.")
def solve(images, checkpoint, version, store_url, as_json):
    """Print the substitute's reading of PNG or JPEG files (up to 4096x4096 pixels; each is resized for the model)."""
    arrays = [_image(path) for path in images]  # before the model loads: a bad file fails fast
    solver = substitute(store_url, checkpoint, version)
    texts = solver.read(arrays)
    if as_json:
        json_out([{"file": str(p), "text": t} for p, t in zip(images, texts)])
    else:
        for p, t in zip(images, texts):
            click.echo(f"{p}\t{t}")


# The substitute shrinks every image to its input (64x160 or so) and a captcha is a few hundred
# pixels wide; 16 megapixels decode to 16 MB of grey (64 MB as floats), where a hostile 20000x20000
# PNG would need 1.6 GB. Checked from the header, before anything is decoded.
MAX_SOLVE_PIXELS = 4096 * 4096


def _image(path: Path):
    """A captcha file as uint8 (H, W), or (H, W, 3) in colour (the solver converts it as its card says);
    a file larger than MAX_SOLVE_PIXELS is refused before decoding."""
    from PIL import Image, UnidentifiedImageError

    from farm.storage.layout import pixels

    too_large = (f"larger than farm solve reads ({MAX_SOLVE_PIXELS} pixels at most, e.g. 4096x4096); "
                 f"crop it to the captcha")
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_SOLVE_PIXELS:
                raise SettingError(f"{path}: {width}x{height} pixels is {too_large}")
            return pixels(image)
    except Image.DecompressionBombError as e:  # PIL refuses the largest before we see the size
        raise SettingError(f"{path}: {too_large}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise SettingError(f"{path}: not a readable image ({e})") from e
