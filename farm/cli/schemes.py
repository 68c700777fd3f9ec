"""`farm schemes`: the captcha schemes this installation draws, built in and plugins."""

from __future__ import annotations


import click

from farm.cli.common import json_out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per scheme or broken plugin.")
def schemes(as_json):
    """List the captcha schemes, built-in and installed as plugins, with alphabet, lengths, size and source.

    Plugins are packages with an entry point in the group captchafarm.schemes (see
    examples/captchafarm-dotted); one that failed to load is listed with its error.
    """
    from farm.core.schemes import get_scheme, plugins, scheme_names, scheme_source

    targets = {p.name: p.target for p in plugins() if not p.error}
    rows = []
    for name in scheme_names():
        scheme = get_scheme(name)
        rows.append({"name": name, "alphabet": scheme.alphabet, "lengths": list(scheme.lengths),
                     "width": scheme.width, "height": scheme.height, "description": scheme.description,
                     "source": scheme_source(name), "entry_point": targets.get(name), "error": None})
    rows += [{"name": p.name, "alphabet": None, "lengths": None, "width": None, "height": None, "description": None,
              "source": p.distribution, "entry_point": p.target, "error": p.error} for p in plugins() if p.error]
    if as_json:
        json_out(rows)
        return
    for r in rows:
        if r["error"]:
            click.echo(f"{r['name']:10s} NOT LOADED ({r['source']}, {r['entry_point']}): {r['error']}")
            continue
        click.echo(f"{r['name']:10s} {r['width']}x{r['height']}  length {r['lengths'][0]}-{r['lengths'][1]}  "
                   f"{r['alphabet']}  ({r['source']})")
        click.echo(f"{'':10s} {r['description']}")
