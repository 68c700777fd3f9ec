"""`farm finetune`: model extraction from attackers' answers, published as a new substitute version."""

from __future__ import annotations

import shlex
import sys

import click

from farm.cli.common import json_out, open_store, store_option
from farm.core.defaults import FinetuneConfig

_DEFAULT = FinetuneConfig()


@click.command()
@click.option("--answers", "names", multiple=True,
              help="Answer batch (name or answers/<name>.jsonl; repeatable), or `all`.")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="A folder of the platform's captchas with their true answers (as `farm train --data`), "
                   "trained on with the answers or alone.")
@click.option("--base", default=None, help="Version to start from [default: CURRENT]; the new one publishes on top. "
                                          "One that is not CURRENT is refused before training, unless --no-promote.")
@click.option("--steps", default=_DEFAULT.steps, show_default=True,
              help="At most this many steps (stops on held-out agreement).")
@click.option("--lr", default=_DEFAULT.lr, show_default=True, help="Learning rate.")
@click.option("--replay", default=_DEFAULT.replay, show_default=True,
              help="Share of each batch that is clean replay of the substitute's own schemes.")
@click.option("--holdout", default=_DEFAULT.holdout, show_default=True,
              help="Share of answers held out to measure agreement.")
@click.option("--tolerance", default=_DEFAULT.tolerance, show_default=True,
              help="Refuse to publish when clean accuracy on a target scheme falls by more than this.")
@click.option("--all-answers", is_flag=True,
              help="Also learn the answers the attacker got right (by default only its mistakes are learned: its "
                   "right answers teach the substitute to resist its own perturbations).")
@click.option("--donors", default=_DEFAULT.donors, show_default=True,
              help="Zoo donors that fail where the attackers failed, joined to every pool of the new version "
                   "(at most this many; 0: none).")
@click.option("--anticipate", default=_DEFAULT.anticipate, show_default=True, metavar="N",
              help="Once the bot has learned the current family: make N labelled captchas of each family it learned, "
                   "adapt copies of the substitute and donors on them as the bot adapts, and aim the new version's "
                   "pools at those copies too (0: off; with 3000 a move took up to ~27 min on 2 cores).")
@click.option("--risk", "risks", multiple=True, default=("attacker",), show_default=True,
              help="Risk ratings whose answers count as queries to an attack model (repeatable).")
@click.option("--seed", default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Fine-tune and report, publish nothing.")
@click.option("--no-promote", is_flag=True,
              help="Publish the result as a version that is not made CURRENT (`farm checkpoint promote` it later); "
                   "any --base may be fine-tuned then.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def finetune(names, data, base, steps, lr, replay, holdout, tolerance, all_answers, donors, anticipate, risks, seed,
             dry_run, no_promote, store_url, as_json):
    """Fine-tune the substitute on attackers' answers (model extraction) or a labelled folder; publish it.

    Each answer is the attacker's reading of a pool captcha: a query to its model. Training mixes
    them with clean replay, stops when agreement with held-out answers stops rising, and refuses
    to promote a model that lost more than --tolerance clean accuracy on the answered schemes (it is
    kept unpromoted, marked refused). When another version became CURRENT during the run, the
    result is kept as an unpromoted version, never thrown away.
    The answers also show which captchas the attacker solved: the zoo donor that fails on the
    same ones joins every pool made with the new version (--donors). And which perturbation family
    it reads: once it reads 25% or more of the current family, the new version's pools are of
    another (one it never answered, else the one it read least), even if no weights moved.
    """
    from farm.exceptions import FinetuneRefused, SettingError
    from farm.ops.finetune import FinetuneConfig, finetune as run, resolve_batches

    if not names and not data:
        raise SettingError("give --answers BATCH (attackers' answers), --data DIR (a labelled folder), or both")
    store = open_store(store_url)
    config = FinetuneConfig(steps=steps, lr=lr, replay=replay, holdout=holdout, tolerance=tolerance,
                            mistakes_only=not all_answers, donors=donors, anticipate=anticipate, risks=tuple(risks),
                            seed=seed).validate()
    keys = resolve_batches(store, list(names)) if names else []
    try:
        result = run(store, keys, base=base, config=config, publish=not dry_run, data=data, promote=not no_promote,
                     command="farm " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except FinetuneRefused as e:
        if as_json:  # the report still goes out, then the refusal as the error
            json_out({**e.result, "refused": str(e)})
        raise
    if as_json:
        json_out(result)
        return
    b, a = result["before"], result["after"]
    clean = ", ".join(f"{k} {b['clean'][k]:.1%} -> {a['clean'][k]:.1%}" for k in result["target_schemes"])
    q = result["queries"]
    right = f" ({q['solved_left_out']} the attacker got right left out)" if q["solved_left_out"] else ""
    click.echo(f"{q['train']} answers trained on{right}, {q['holdout']} held out, skipped {q['skipped'] or 'none'}")
    mimicry = (f" (on its {q['holdout_mistakes']} held-out mistakes {b['agreement_on_mistakes']:.1%} -> "
               f"{a['agreement_on_mistakes']:.1%})" if 0 < q["holdout_mistakes"] < q["holdout"] else "")
    if result.get("weights_refused"):
        refused = result["weights_refused"]
        kept = f"; kept as {refused['version']}, marked refused" if refused["version"] else ""
        click.echo(f"{refused['reason']}{kept}: the weights stay {result['base']}'s, and the new family goes out "
                   f"with them")
    elif result["weights"] == "unchanged":
        click.echo(f"no weights agreed better with the held-out answers ({b['agreement']:.1%}): the weights stay "
                   f"{result['base']}'s")
    else:
        click.echo(f"agreement with the attacker {b['agreement']:.1%} -> {a['agreement']:.1%}{mimicry}; clean {clean}")
    verb = "are also" if result["published"] else "would also be"
    if result["donors_named"]:
        scores, named = result["resemblance"], result["donors_named"]
        they_fail = "it fails" if len(named) == 1 else "they fail"
        click.echo(f"pools of the new version {verb} aimed at {', '.join(named)}: {they_fail} where the attacker "
                   f"failed (resemblance {', '.join(f'{scores[n]:.2f}' for n in named)}, the substitute's "
                   f"{scores['substitute'] or 0:.2f})")
    if result["donors_kept"]:
        click.echo(f"pools of the new version {verb} aimed at {', '.join(result['donors_kept'])}, "
                   f"as {result['base']}'s are")
    click.echo(_family_line(result["family"], result["published"]))
    if result.get("hardened"):
        copies = ", ".join(f"{c['of']} as {c['version']}" for c in result["hardened"]["copies"])
        click.echo(f"pools of the new version {verb} aimed at copies hardened on the farm's own pools "
                   f"({', '.join(result['hardened']['on'].values())}): {copies}")
    click.echo(_fate(result))


def _family_line(move: dict, published: bool) -> str:
    """The farm's move: the family of the new version's pools, and the share of each family the bot read."""
    shares = lambda read: ", ".join(f"{name} {share:.1%}" for name, share in read.items())  # noqa: E731
    earlier = f"; earlier generations: {shares(move['earlier'])}" if move.get("earlier") else ""
    evidence = (f"the bot read {shares(move['read']) or 'no pool of a family'} ({move['answers']} answers{earlier}; "
                f"learned at {move['learned']:.0%})")
    if move["name"] == move["from"]:
        return f"family stays {move['name']}: {evidence}"
    verb = "are" if published else "would be"
    return f"pools of the new version {verb} of family {move['name']}, not {move['from']}: {evidence}"


def _fate(result: dict) -> str:
    """What became of the new version: CURRENT, kept unpromoted (and how to use it), or nothing."""
    version = result["version"]
    if not result["published"]:
        return "dry run: nothing published"
    if result["promoted"]:
        return f"published {version} on top of {result['base']}"
    return (f"kept {version} unpromoted (parent {result['base']}): {result['reason']}; promote it with "
            f"`farm checkpoint promote {version}`, or fine-tune again on top of CURRENT")
