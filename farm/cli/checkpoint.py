"""`farm checkpoint`: the registry of substitute versions and the CURRENT one workers load."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option


@click.group()
def checkpoint():
    """List, inspect, publish and switch substitute checkpoints in the store."""


@checkpoint.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(store_url, as_json):
    """Published versions, oldest first: generation, family, lineage (<- parent <- its parent ...), * on CURRENT.

    A version whose card names no family (the bundled v1) makes noise pools of grey schemes and ink pools of
    colour ones: shown noise|ink (JSON: family, family_colour). `+gen` marks a version with a trained
    perturbation generator of its own (`farm generator train`; JSON: generator, the version whose generator
    `--method generator` uses, its own or an ancestor's).

    A status marks versions held back from CURRENT. unpromoted: stored without becoming CURRENT (a
    fine-tune that lost the race for it, --no-promote, --no-current) and not promoted since;
    refused: kept by a fine-tune the guard refused; copy: a copy of the substitute or a donor hardened on the
    farm's own pools (anticipation), an attack target the version after it names, never a substitute.
    """
    from farm.core.families import card_family
    from farm.exceptions import CheckpointError, FarmError
    from farm.storage import registry

    store = open_store(store_url)
    try:
        pointer = registry.current(store) or {}
    except CheckpointError as e:  # a corrupt CURRENT: the list is where the operator picks the version to promote
        click.echo(f"warning: {e}", err=True)
        pointer = {}
    rows, cards = [], {}
    for version in registry.versions(store):
        try:
            cards[version] = registry.card(store, version)
        except FarmError as e:  # one unreadable card must not hide the others
            rows.append({"version": version, "current": version == pointer.get("version"), "error": str(e)})
            continue
        c = cards[version]
        rows.append({"version": version, "current": version == pointer.get("version"), "parent": c.get("parent"),
                     "sha256": c.get("sha256"), "published": c.get("published"),
                     "accuracy": (c.get("metrics") or {}).get("accuracy"),
                     "held_back": c.get("held_back"), "refused": c.get("refused"), "copy_of": c.get("copy_of")})
    promoted = set(registry.lineage(cards, pointer.get("version")))
    for r in rows:
        if "error" not in r:
            r.update(status=_status(r, promoted), generation=registry.generation(store, r["version"], cards),
                     family=card_family(cards[r["version"]]), family_colour=card_family(cards[r["version"]], "RGB"),
                     lineage=registry.lineage(cards, r["version"])[1:],
                     generator=registry.generator_version(store, r["version"], cards))
    if as_json:
        json_out(rows)
        return
    if not rows:
        click.echo("no versions yet (the first `farm generate` publishes the bundled substitute)")
    for r in rows:
        mark = "*" if r["current"] else " "
        if "error" in r:
            click.echo(f"{mark} {r['version']:6s} unreadable: {r['error']}")
            continue
        acc = ", ".join(f"{k} {v:.1%}" for k, v in (r["accuracy"] or {}).items())
        line = " <- ".join([f" copy of {r['copy_of']}" if r["copy_of"] else "", *r["lineage"]])
        family = r["family"] if r["family"] == r["family_colour"] else f"{r['family']}|{r['family_colour']}"
        family = "-" if r["copy_of"] else family  # a copy is an attack target: no pool is made with it
        family += " +gen" if r["generator"] == r["version"] else ""
        click.echo(f"{mark} {r['version']:6s} gen {r['generation'] or '?'!s:3s} {r['status'] or '':10s} "
                   f"{r['sha256'][:12]}  {r['published']}  {family:14s}  {acc} {line}".rstrip())
    if any(r.get("status") for r in rows):
        click.echo("(`farm checkpoint show VERSION` says why a version is unpromoted or refused; "
                   "`farm checkpoint promote VERSION` promotes it, --force for a refused one)")


def _status(row: dict, promoted: set[str]) -> str | None:
    """copy, refused or unpromoted for a version held back from CURRENT and not promoted since (CURRENT's lineage)."""
    if row["version"] in promoted or not (row["refused"] or row["held_back"]):
        return None
    return "copy" if row["copy_of"] else "refused" if row["refused"] else "unpromoted"


@checkpoint.command()
@click.argument("version", required=False)
@store_option
def show(version, store_url):
    """Print the card of VERSION (default: CURRENT) as JSON."""
    from farm.exceptions import CheckpointError
    from farm.storage import registry

    store = open_store(store_url)
    if version is None:
        pointer = registry.current(store)
        if pointer is None:
            raise CheckpointError("the registry is empty; publish a version with `farm checkpoint publish FOLDER`")
        version = pointer["version"]
    json_out(registry.card(store, version))


@checkpoint.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--parent", default=None, help="Publish only if CURRENT is still this version (what you trained from); "
                                            "with --no-current, recorded as the parent.")
@click.option("--no-current", is_flag=True, help="Store the version unpromoted, without switching CURRENT to it.")
@click.option("--allow-charset-change", is_flag=True, help="Accept a model for another alphabet than CURRENT's.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the new version's card as JSON.")
def publish(folder, parent, no_current, allow_charset_change, store_url, as_json):
    """Publish a checkpoint FOLDER (model.safetensors + card.json) as a new version and make it CURRENT.

    A card naming a generator (`generator`) publishes it too, from the folder's generator.safetensors.
    """
    from farm.core.checkpoint import read_solver_dir
    from farm.storage import registry

    weights, card = read_solver_dir(folder)
    generator = folder / registry.GENERATOR_FILE
    store = open_store(store_url)
    version = registry.publish(store, weights, card, parent=parent, make_current=not no_current,
                               allow_charset_change=allow_charset_change,
                               generator=generator.read_bytes() if "generator" in card and generator.exists() else None)
    if as_json:
        json_out(registry.card(store, version))
    else:
        click.echo(f"published {version}" + ("" if no_current else " (now CURRENT)"))


@checkpoint.command()
@click.argument("version")
@click.option("--allow-charset-change", is_flag=True, help="Accept a model for another alphabet than CURRENT's.")
@click.option("--force", is_flag=True, help="Promote a version the fine-tune guard refused (kept for inspection).")
@store_option
def promote(version, allow_charset_change, force, store_url):
    """Make VERSION current after verifying it loads (a refused one only with --force)."""
    from farm.storage import registry

    registry.promote(open_store(store_url), version, allow_charset_change=allow_charset_change, force=force)
    click.echo(f"CURRENT is {version}")


@checkpoint.command()
@click.argument("version", required=False)
@store_option
def rollback(version, store_url):
    """Make the parent of CURRENT (or VERSION) current again."""
    from farm.storage import registry

    now = registry.rollback(open_store(store_url), version)
    click.echo(f"CURRENT is {now}")
