"""`farm study`: usability studies of pools with people (the pages are the service's: `farm serve`)."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option
from farm.exceptions import SettingError


@click.group()
def study():
    """Define usability studies over pools and report what participants managed."""


@study.command()
@click.argument("name")
@click.option("--pool", "pools", multiple=True, metavar="POOL[=N]",
              help="A pool to study, with N captchas per participant (default --per-pool); repeat it.")
@click.option("--per-pool", default=3, show_default=True, type=click.IntRange(1),
              help="Captchas per participant of each pool given without =N.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='A JSON file: {"title": "...", "pools": {"clean": 3, "momentum-32": 3}} (or a list of pools).')
@click.option("--title", default=None, help="The heading participants see.")
@click.option("--replace", is_flag=True, help="Overwrite a study of this name (its responses stay).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the study as JSON.")
def create(name, pools, per_pool, config, title, replace, store_url, as_json):
    """Define study NAME: each participant sees N captchas of every pool, in a random order.

    e.g. `farm study create signup --pool clean --pool default-32 --pool iterative-8 --per-pool 4`,
    then send people to http://<service>/study/signup.
    """
    from farm.ops.studies import create_study, parse_arms, read_config

    values = list(pools)
    if config:
        data = read_config(config)
        per_pool = data.get("per_pool", per_pool)
        listed = data["pools"]
        values += [f"{p}={n}" for p, n in listed.items()] if isinstance(listed, dict) else [str(p) for p in listed]
        title = title or data.get("title")
    if not values:
        raise SettingError("pools: name at least one with --pool NAME[=N] or --config FILE")
    arms = parse_arms(values, per_pool)
    made = create_study(open_store(store_url), name, arms, title, replace)
    if as_json:
        json_out(made.to_dict())
        return
    parts = ", ".join(f"{a.pool} x{a.count} ({made.pools[a.pool]['label']})" for a in made.arms)
    click.echo(f"study {name}: {made.steps} captchas per participant: {parts}; page /study/{name} of `farm serve`")


@study.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(store_url, as_json):
    """Studies of the store with their pools."""
    from farm.ops.studies import list_studies, read_study

    store = open_store(store_url)
    rows = [read_study(store, name).to_dict() for name in list_studies(store)]
    if as_json:
        json_out(rows)
        return
    if not rows:
        click.echo("no studies yet; define one with `farm study create NAME --pool POOL --pool POOL`")
    for r in rows:
        arms = ", ".join(f"{a['pool']}={a['count']}" for a in r["arms"])
        click.echo(f"{r['study']:20s} {arms}  {r['created']}")


@study.command()
@click.argument("name")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG comparing the pools here.")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999),
              help="Level of the intervals.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(name, plot, confidence, store_url, as_json):
    """Pass rate (Wilson interval) and median solve time (bootstrap interval) per pool of study NAME."""
    from farm.ops.studies import plot_report, report as summarise

    summary = summarise(open_store(store_url), name, confidence)
    if plot:
        plot_report(summary, plot)
    if as_json:
        json_out({**summary, **({"plot": str(plot)} if plot else {})})
        return
    level = f"{confidence:.0%}"
    click.echo(f"study {name}: {summary['participants']} participants ({summary['finished']} finished all "
               f"{summary['steps']}), {summary['answers']} answers; intervals at {level}")
    click.echo(f"{'pool':20s} {'setting':24s} {'answers':>7s}  {'pass rate':>22s}  {'median seconds':>22s}")
    for r in summary["pools"]:
        rate = "-" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}" + _interval(r["pass_rate_ci"], 100, "%")
        median = "-" if r["median_seconds"] is None else f"{r['median_seconds']:.1f}" + _interval(
            r["median_seconds_ci"], 1, "")
        click.echo(f"{r['pool']:20s} {r.get('label', ''):24s} {r['answers']:>7d}  {rate:>22s}  {median:>22s}")
    if plot:
        click.echo(f"wrote {plot}")


def _interval(ci, scale: float, unit: str) -> str:
    return "" if ci is None else f" [{ci[0] * scale:.1f}{unit}, {ci[1] * scale:.1f}{unit}]"

