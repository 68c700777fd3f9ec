"""`farm pool`: what platforms see of the pools (list, stats, draw, verify, export), and operators' refill and
delete."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option

DELETE_THREADS = 8  # an object store deletes one object a request: a few in flight hide the latency


@click.group()
def pool():
    """Read generated pools the way a platform does; refill or delete them."""


@pool.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(store_url, as_json):
    """Pools with how many captchas are ready."""
    from farm.core.seeds import KEYED
    from farm.storage.pools import list_pools

    rows = list_pools(open_store(store_url))
    if as_json:
        json_out(rows)
        return
    if not rows:
        click.echo("no pools yet; make one with `farm generate --pool NAME --count N`")
    for r in rows:
        click.echo(f"{r['pool']:20s} {r['complete']:>7d}/{r['count']:<7d} {r['status']:10s} {r['scheme']:8s} "
                   f"{r['method']:9s} {_budget(r)}  {r['family'] or 'clean':8s}  substitute {r['substitute']} "
                   f"(gen {r['generation'] or '?'})"
                   + ("" if r["derivation"] == KEYED else "  UNKEYED: anyone can render it again; replace it"))


def _budget(row: dict) -> str:
    """linf eps 32.0/255; none for a clean pool (its method takes no budget)."""
    return "none" if row["eps"] is None else f"{row['norm']} eps {row['eps'] * 255:.1f}/255"


@pool.command()
@click.argument("name")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(name, store_url, as_json):
    """How a pool fools the substitute and what it costs in image quality (no answers)."""
    from farm.storage.pools import pool_stats

    s = pool_stats(open_store(store_url), name)
    if as_json:
        json_out(s)
        return
    click.echo(f"pool {name}: {s['complete']}/{s['count']} captchas, {s['shards_complete']}/{s['shards']} shards, "
               f"{s['status']}, family {s['family'] or 'none (clean)'}")
    if s["complete"]:
        click.echo(f"substitute {', '.join(s['substitutes'])} (gen {s['generation'] or '?'}) reads "
                   f"{s['substitute_accuracy_clean']:.1%} clean -> "
                   f"{s['substitute_accuracy_adversarial']:.1%} adversarial")
        click.echo(f"SSIM mean {s['mean_ssim']:.3f} (min {s['min_ssim']:.3f}), "
                   f"L-inf mean {s['mean_linf'] * 255:.1f}/255, pixels changed {s['mean_changed']:.1%}")
        if "mean_ssim_glyph_colour" in s:
            click.echo(f"colour: SSIM above on luminance; glyph region {s['mean_ssim_glyph']:.3f} on luminance, "
                       f"{s['mean_ssim_glyph_colour']:.3f} on colour")


@pool.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the PNG here.")
@click.option("--mark-served", is_flag=True, help="Mark the captcha served (used up: the refill counts it).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print {id, url} as JSON.")
def draw(name, output, mark_served, store_url, as_json):
    """Draw a random captcha not served yet: print its id and URL (presigned on S3), optionally save the PNG."""
    from farm.ops.client import PoolClient

    shown = PoolClient(open_store(store_url)).draw(name, fetch=output is not None, mark=mark_served)
    if output is not None:
        output.write_bytes(shown.png)
    if as_json:
        json_out({"pool": name, "id": shown.id, "url": shown.url, **({"file": str(output)} if output else {})})
    else:
        click.echo(f"{shown.id}\t{shown.url}")


@pool.command()
@click.argument("name")
@click.argument("captcha_id")
@click.argument("answer")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print {ok, reason} as JSON.")
def verify(name, captcha_id, answer, store_url, as_json):
    """Check ANSWER for CAPTCHA_ID; exit status 0 when right, 1 when wrong or unknown."""
    from farm.ops.client import PoolClient

    verdict = PoolClient(open_store(store_url)).check(name, captcha_id, answer)
    if as_json:
        json_out({"pool": name, "id": captcha_id, "ok": verdict.ok, "reason": verdict.reason})
    else:
        click.echo(verdict.reason)
    raise SystemExit(0 if verdict.ok else 1)


@pool.command()
@click.argument("name")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--with-keys", is_flag=True, help="Copy the private answers (keys/) too: only for a platform back end.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export(name, folder, with_keys, store_url, as_json):
    """Copy a pool's complete shards into FOLDER in the store layout (a store of its own: file://FOLDER)."""
    from farm.storage.pools import export_pool
    from farm.storage.store import LocalStore

    result = export_pool(open_store(store_url), name, LocalStore(folder), with_keys=with_keys)
    if as_json:
        json_out(result)
    else:
        click.echo(f"exported {result['images']} captchas of {name} to {folder}"
                   + (" with answers (keys/ is private)" if with_keys else " (no answers)"))


@pool.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Delete without asking (for scripts).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print {pool, deleted, store} as JSON.")
def delete(name, yes, store_url, as_json):
    """Delete pool NAME: its manifest, images, keys, served marks, everything under pools/NAME/ in the store.

    Any pool, complete or not (a generate that failed leaves one that blocks its name). A platform
    serving this pool loses it: its captchas can no longer be drawn, shown or verified. Stop any
    generate or refill of it first. Asks before deleting, unless --yes.
    """
    from farm.exceptions import PoolError
    from farm.storage.layout import check_pool_name

    store = open_store(store_url)
    check_pool_name(name)
    keys = store.list(f"pools/{name}/")
    if not keys:
        raise PoolError(f"pool: {name!r} does not exist in {store.url}; see `farm pool list`")
    if not yes:
        click.confirm(f"Delete pool {name} ({len(keys)} objects) from {store.url}? A platform serving it loses it",
                      abort=True, err=True)
    _delete_pool(store, name, keys)
    if as_json:
        json_out({"pool": name, "deleted": len(keys), "store": store.url})
    else:
        click.echo(f"deleted pool {name}: {len(keys)} objects from {store.url}")


def _delete_pool(store, name: str, keys: list[str]) -> None:
    """The manifest first (the pool leaves the lists), then keys/ (no shard counts as complete), then the rest.

    In that order a delete cut short leaves no half-pool that a later generate of the name would
    resume from; `farm pool delete` again removes what is left.
    """
    from farm.storage.layout import manifest_key

    manifest, answers = manifest_key(name), f"pools/{name}/keys/"
    first = [k for k in keys if k == manifest] + [k for k in keys if k.startswith(answers)]
    for key in first:
        store.delete(key)
    rest = sorted(set(keys) - set(first))
    with ThreadPoolExecutor(DELETE_THREADS) as threads:
        list(threads.map(store.delete, rest))  # list(): the first failure is raised here


@pool.command()
@click.option("--min", "floor", envvar="FARM_REFILL_MIN", type=click.IntRange(min=0), required=True,
              help="Unused captchas each pool keeps [env FARM_REFILL_MIN].")
@click.option("--pool", "pools", multiple=True, help="Pool to look after (repeatable; default: every pool with "
                                                     "served marks, or FARM_REFILL_POOLS).")
@click.option("--dry-run", is_flag=True, help="Show each pool's level and what would be added; generate nothing.")
@store_option
@click.option("--no-progress", is_flag=True, help="No progress bar (embedded).")
@click.option("--json", "as_json", is_flag=True, help="Print one row per pool as JSON.")
def refill(floor, pools, dry_run, store_url, no_progress, as_json):
    """Grow pools below --min unused captchas (complete minus served) by whole shards.

    With FARM_BROKER set the new shards are queued on the farm (as the beat process does every
    FARM_REFILL_SECONDS) and the command returns; without it they are generated here. Stored
    shards are never rewritten; a pool whose last shard is partial cannot grow and is reported.
    """
    import os

    from farm.ops.refill import refill as run, refill_pools_setting
    from farm.ops.submit import farm_runner, growth_jobs
    from farm.storage import registry

    store = open_store(store_url)
    names = list(pools) or refill_pools_setting()
    if dry_run:
        rows = run(store, floor, None, names)
    elif os.environ.get("FARM_BROKER"):  # the farm's queue, found by entry point; jobs follow CURRENT
        runner = farm_runner()
        registry.ensure_current(store)  # a write path: the bundled substitute becomes v1 of an empty store
        rows = run(store, floor, growth_jobs(store, runner), names)
    else:
        rows = run(store, floor, _embedded_grower(store_url, store, progress=not (no_progress or as_json)), names)
    if as_json:
        json_out(rows)
    else:
        if not rows:
            click.echo("no pool to refill: none has served marks yet (platforms mark them; or name one with --pool)")
        for r in rows:
            click.echo(_refill_line(r, dry_run))
    if any(r["error"] for r in rows):
        raise SystemExit(1)


def _embedded_grower(store_url, store, progress: bool):
    """generate(pool, spec) for farm.ops.refill: the pool's new shards in this process, with CURRENT."""
    from farm.cli.common import substitute
    from farm.ops.local_runner import LocalRunner
    from farm.ops.shard import attack_solvers
    from farm.ops.submit import submit
    from farm.storage.config import device, secret

    loaded = []  # the substitute, loaded for the first pool that grows

    def grow(name, spec):
        if not loaded:
            loaded.append(substitute(store_url, None, None, publish=True))
        runner = LocalRunner(attack_solvers(spec, loaded[0], device()), secret(store), device())
        return submit(store, name, spec, loaded[0], runner, grow=True, progress=progress)
    return grow


def _refill_line(r: dict, dry_run: bool) -> str:
    if r["error"]:
        return f"{r['pool']}: {r['error']}"
    level = f"{r['pool']}: {r['unused']} unused ({r['complete']} complete, {r['served']} served), floor {r['floor']}"
    if r["grow_to"] is None:
        return f"{level}: nothing to do"
    if r["skipped"]:
        return f"{level}: cannot grow, {r['skipped']}"
    if dry_run:
        return f"{level}: would grow from {r['count']} to {r['grow_to']} captchas"
    return f"{level}: grown from {r['count']} to {r['grow_to']} captchas" + (f", job {r['job']}" if r["job"] else "")
