"""`farm pool`: what platforms see of the pools: list, stats, draw, verify, export."""

from __future__ import annotations

from pathlib import Path

import click

from farm.commands.common import json_out, open_store_or_fail, or_fail, store_option


@click.group()
def pool():
    """Read generated pools the way a platform does."""


@pool.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(store_url, as_json):
    """Pools with how many captchas are ready."""
    from farm.pool import list_pools

    rows = or_fail(list_pools, open_store_or_fail(store_url))
    if as_json:
        json_out(rows)
        return
    if not rows:
        click.echo("no pools yet; make one with `farm generate --pool NAME --count N`")
    for r in rows:
        click.echo(f"{r['pool']:20s} {r['complete']:>7d}/{r['count']:<7d} {r['status']:10s} {r['scheme']:8s} "
                   f"{r['method']:9s} {r['norm']} eps {r['eps'] * 255:.1f}/255  substitute {r['substitute']}")


@pool.command()
@click.argument("name")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(name, store_url, as_json):
    """How a pool fools the substitute and what it costs in image quality (no answers)."""
    from farm.pool import pool_stats

    s = or_fail(pool_stats, open_store_or_fail(store_url), name)
    if as_json:
        json_out(s)
        return
    click.echo(f"pool {name}: {s['complete']}/{s['count']} captchas, {s['shards_complete']}/{s['shards']} shards, "
               f"{s['status']}")
    if s["complete"]:
        click.echo(f"substitute {', '.join(s['substitutes'])} reads {s['substitute_accuracy_clean']:.1%} clean -> "
                   f"{s['substitute_accuracy_adversarial']:.1%} adversarial")
        click.echo(f"SSIM mean {s['mean_ssim']:.3f} (min {s['min_ssim']:.3f}), L-inf mean {s['mean_linf'] * 255:.1f}/255, "
                   f"pixels changed {s['mean_changed']:.1%}")


@pool.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the PNG here.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print {id, url} as JSON.")
def draw(name, output, store_url, as_json):
    """Draw a random captcha: print its id and URL (presigned on S3), optionally save the PNG."""
    from farm.client import PoolClient

    client = PoolClient(open_store_or_fail(store_url))
    shown = or_fail(client.draw, name, fetch=output is not None)
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
    from farm.client import PoolClient

    verdict = or_fail(PoolClient(open_store_or_fail(store_url)).check, name, captcha_id, answer)
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
    from farm.pool import export_pool
    from farm.store import LocalStore

    result = or_fail(export_pool, open_store_or_fail(store_url), name, LocalStore(folder), with_keys=with_keys)
    if as_json:
        json_out(result)
    else:
        click.echo(f"exported {result['images']} captchas of {name} to {folder}"
                   + (" with answers (keys/ is private)" if with_keys else " (no answers)"))
