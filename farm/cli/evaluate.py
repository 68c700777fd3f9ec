"""`farm evaluate`: a solver's accuracy on fresh captchas, or on a pool as it is and after the attacker's clean-up."""

from __future__ import annotations


import click

from farm.cli.common import checkpoint_option, json_out, open_store, store_option, substitute, version_option
from farm.exceptions import SettingError

DEFAULT_SEED = 2026  # fresh evaluation captchas: a seed no training run uses


@click.command()
@click.option("--scheme", "schemes", multiple=True, help="Scheme to evaluate (repeatable; default: all).")
@click.option("--count", default=500, show_default=True, help="Fresh captchas per scheme.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True,
              help="Seed of the fresh captchas (never used in training).")
@click.option("--pool", default=None,
              help="Evaluate on a generated pool instead: as it is and after the attacker's clean-up chains.")
@click.option("--limit", default=None, type=int, help="With --pool: at most this many captchas.")
@click.option("--zoo/--no-zoo", "with_zoo", default=True, show_default=True,
              help="With --pool: also every trained zoo solver, donors and held-out marked.")
@click.option("--preprocess/--no-preprocess", "with_preprocess", default=True, show_default=True,
              help="With --pool: also after each attacker clean-up chain (--no-preprocess: as they are only).")
@click.option("--chain", "chains", multiple=True,
              help="With --pool: a clean-up chain, steps joined by '>' (quote it), e.g. 'median3>otsu>open3' "
                   "(repeatable; default: farm.core.preprocess.CHAINS, every family of the attacker's toolbox). "
                   "On a colour pool each runs after every conversion to grey (farm.core.preprocess.CONVERSIONS), "
                   "as does each conversion alone.")
@checkpoint_option
@version_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(schemes, count, seed, pool, limit, with_zoo, with_preprocess, chains, checkpoint, version, store_url,
             as_json):
    """Measure how well the substitute reads fresh clean captchas, or a pool as it is and after the attacker's clean-up.

    \b
    farm evaluate --pool P                                   every zoo solver, every chain of CHAINS
    farm evaluate --pool P --chain otsu --chain 'tv>sauvola' chosen chains (quoted: > is the shell's too)
    farm evaluate --pool P --chain 'saturation>otsu'         a colour pool: the conversion named first
    """
    from farm.core.schemes import scheme_names
    from farm.ops.evaluate import scheme_accuracy

    if pool:
        chains = _pool_chains(chains, with_preprocess)  # before the models load: a typo fails fast
        solver = substitute(store_url, checkpoint, version)
        _evaluate_pool(solver, open_store(store_url), pool, limit, with_zoo, chains, as_json)
        return
    if chains:
        raise SettingError("--chain: clean-up chains apply to a pool; add --pool P")
    solver = substitute(store_url, checkpoint, version)
    names = list(schemes) or scheme_names()
    result = {"substitute": solver.version, "seed": seed,
              "schemes": scheme_accuracy(solver, names, count, seed=seed, progress=not as_json)}
    if as_json:
        json_out(result)
    else:
        click.echo(f"substitute {solver.version}, {count} fresh captchas per scheme, seed {seed}")
        for name, r in result["schemes"].items():
            click.echo(f"  {name:10s} {r['accuracy']:7.2%}")


def _pool_chains(chains: tuple[str, ...], with_preprocess: bool) -> list[str]:
    """The chains `farm evaluate --pool` reads after, checked, `none` (the images as they are) first."""
    from farm.core.preprocess import CHAINS, parse_chains

    if chains and not with_preprocess:
        raise SettingError("--chain: --no-preprocess reads the pool as it is only; drop one of the two")
    try:
        return [c.name for c in parse_chains(["none", *(chains or (CHAINS if with_preprocess else ()))])]
    except SettingError as e:  # named after the flag
        raise SettingError(f"--chain: {str(e).removeprefix('chain: ')}") from e


def _evaluate_pool(solver, store, pool, limit, with_zoo, chains, as_json):
    from farm.core.zoo import members, zoo_path
    from farm.core.zoo_loading import load_member
    from farm.ops.evaluate import load_pool, pool_report

    records, adversarial, clean = load_pool(store, pool, limit)
    solvers, roles = {"substitute": solver}, {"substitute": "substitute"}
    if with_zoo:
        for m in members():
            if (zoo_path() / m.name / "card.json").exists():
                solvers[m.name], roles[m.name] = load_member(m.name), m.role
    result = pool_report(solvers, roles, records, adversarial, clean, chains, progress=not as_json)
    result = {"pool": pool, "count": len(records), "substitute": solver.version, **result}
    if as_json:
        json_out(result)
        return
    click.echo(f"pool {pool}: {len(records)} captchas{' in colour' if result.get('colour') else ''}, "
               f"substitute {solver.version}, mean SSIM {result['mean_ssim']:.3f} "
               f"(glyph region {result['mean_ssim_glyph']:.3f}), max L-inf {result['max_linf'] * 255:.0f}/255")
    _echo_pool_table(result["accuracy"], ["none", *result["chains"]])


def _echo_pool_table(table: dict, chains: list[str]) -> None:
    """Chains down, solvers across (role under the name), then each solver's worst chain (on colour: per conversion)."""
    width = max(len(c) for c in chains) + 2
    click.echo("accuracy clean -> adversarial, as they are (none) and after each clean-up chain")
    click.echo(f"  {'chain':{width}s}" + "".join(f"{name:>16s}" for name in table))
    click.echo(f"  {'':{width}s}" + "".join(f"{row['role']:>16s}" for row in table.values()))
    for chain in chains:
        cells = "".join(f"  {row['clean'][chain]:6.1%} ->{row['adversarial'][chain]:6.1%}" for row in table.values())
        click.echo(f"  {chain:{width}s}{cells}")
    if len(chains) == 1:
        return
    in_colour = all("worst_per_conversion" in row for row in table.values())
    click.echo("worst clean-up per solver: the chain under which it reads the most adversarial captchas"
               + (", per conversion to grey and overall" if in_colour else ""))
    for name, row in table.items():
        worsts = ([*row["worst_per_conversion"].items(), ("overall", row["worst"])] if in_colour
                  else [("", row["worst"])])
        for i, (conversion, worst) in enumerate(worsts):
            who = f"{name:14s} {row['role']:10s}" if i == 0 else ""
            click.echo(f"  {who:25s} {conversion:{11 if in_colour else 0}s}{worst['chain']:{width}s} "
                       f"{worst['clean']:6.1%} ->{worst['adversarial']:6.1%}")
