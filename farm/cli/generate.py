"""`farm generate`: a pool of adversarial captchas, embedded or on the farm."""

from __future__ import annotations

import os
from pathlib import Path

import click

from farm.core.defaults import GENERATE_DEFAULTS
from farm.cli.common import Fraction, checkpoint_option, fail, json_out, open_store_or_fail, store_option, \
    substitute, version_option


@click.command()
@click.option("--pool", required=True, help="Pool name (letters, digits, - _ .).")
@click.option("--count", type=int, help="Captchas in the pool (required, except with --source: all of the folder).")
@click.option("--scheme", default="classic", show_default=True, help="Captcha scheme (see `farm schemes`).")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="Perturb a platform's own captchas instead of rendering a scheme: a folder of images with "
                   "their answers (labels.jsonl, labels.csv or the file names; see docs/schemes.md). It is "
                   "copied into the store so farm workers read it too.")
@click.option("--method", default=GENERATE_DEFAULTS["method"], show_default=True,
              help="none (clean control), direct, iterative, momentum or robust.")
@click.option("--norm", default="linf", show_default=True, type=click.Choice(["linf", "l2"]))
@click.option("--eps", default=f"{round(GENERATE_DEFAULTS['eps'] * 255)}/255", show_default=True, type=Fraction(),
              help="Budget (off the glyphs when --eps-glyph is smaller), e.g. 8/255.")
@click.option("--alpha", default=None, type=Fraction(), help="Step size [default: 2.5 eps / steps].")
@click.option("--steps", default=GENERATE_DEFAULTS["steps"], show_default=True, help="Steps of the iterative methods.")
@click.option("--mask", default=GENERATE_DEFAULTS["mask"], show_default=True,
              help="full, background, glyph, strokes (random curves off the glyphs), or a PNG of the "
                   "scheme's size (white = may change).")
@click.option("--margin", default=1, show_default=True, help="Background mask: pixels kept clear around glyphs.")
@click.option("--random-start", is_flag=True, help="Start from a random point of the budget ball.")
@click.option("--smoothing", default=GENERATE_DEFAULTS["smoothing"], show_default=True,
              help="Gaussian sigma over the gradient (TI); 0: off.")
@click.option("--diversity", default=GENERATE_DEFAULTS["diversity"], show_default=True,
              help="Probability of random resize-and-pad at each step (DI); 0: off.")
@click.option("--early-stop/--no-early-stop", default=GENERATE_DEFAULTS["early_stop"], show_default=True,
              help="Stop a captcha once the substitute misreads it (least change) or spend every step "
                   "(transfers to other solvers).")
@click.option("--decay", default=1.0, show_default=True, help="Momentum decay (momentum, robust).")
@click.option("--eps-glyph", default=None, type=Fraction(),
              help="L-inf budget on the glyphs (dilated by --margin), smaller than --eps off them "
                   f"[default: {round(GENERATE_DEFAULTS['eps_glyph'] * 255)}/255 when --norm linf and --eps is larger; "
                   "else none].")
@click.option("--ensemble", multiple=True, help="Zoo donor attacked together with the substitute (repeatable).")
@click.option("--shard-size", default=256, show_default=True, help="Captchas per shard (unit of work and of resume).")
@click.option("--seed", default=0, show_default=True, help="Same seed, scheme and count: same clean captchas.")
@checkpoint_option
@version_option
@store_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
@click.option("--no-wait", is_flag=True, help="Farm only (FARM_BROKER): queue the shards, print the job id, return.")
def generate(pool, count, scheme, source, method, norm, eps, alpha, steps, mask, margin, random_start, smoothing,
             diversity, early_stop, decay, eps_glyph, ensemble, shard_size, seed, checkpoint, version, store_url, no_progress,
             as_json, no_wait):
    """Generate a pool of adversarial captchas (re-run with the same arguments to complete it).

    With FARM_BROKER set the farm's workers generate it: with the version named by --version or
    --checkpoint (published), kept to by every shard, else with CURRENT as each shard starts.
    """
    from farm.core.spec import MASKS, PoolSpec
    from farm.exceptions import FarmError
    from farm.ops.local_runner import LocalRunner
    from farm.ops.shard import attack_solvers
    from farm.ops.submit import farm_runner, job_substitute, submit
    from farm.storage.config import device, secret
    from farm.storage.jobs import PINNED
    from farm.storage.layout import check_pool_name

    if eps_glyph is None and norm == "linf" and eps > GENERATE_DEFAULTS["eps_glyph"]:
        eps_glyph = GENERATE_DEFAULTS["eps_glyph"]
    if count is None and source is None:
        fail("--count: how many captchas the pool holds (only --source pools default to the whole folder)")
    if source is not None and mask not in MASKS:
        fail("--mask: a --source pool takes full, background, glyph or strokes; give glyph masks as "
             "<image>.mask.png in the folder")
    try:
        check_pool_name(pool)
        spec = PoolSpec(count=1 if count is None else count, scheme=scheme, method=method, norm=norm, eps=eps, alpha=alpha, steps=steps,
                        mask=mask, margin=margin, seed=seed, shard_size=shard_size, random_start=random_start,
                        smoothing=smoothing, diversity=diversity, decay=decay, eps_glyph=eps_glyph, early_stop=early_stop,
                        ensemble=tuple(ensemble)).validate()
    except ValueError as e:
        fail(str(e))
    farm = os.environ.get("FARM_BROKER")
    if no_wait and not farm:
        fail("--no-wait: needs the farm (set FARM_BROKER); an embedded run generates in this process")
    store = open_store_or_fail(store_url)
    try:
        if farm:  # the farm's queue, found by entry point; its workers load the model, this process names it
            runner = farm_runner()
            chosen, follows = job_substitute(store, checkpoint, version)
        else:
            chosen, follows = substitute(store_url, checkpoint, version, publish=True), PINNED
        if source is not None:
            spec = _source_spec(spec, source, count, store, chosen)
        if not farm:
            runner = LocalRunner(attack_solvers(spec, chosen, device()), secret(store), device())
        summary = submit(store, pool, spec, chosen, runner, follows=follows, wait=not no_wait,
                         progress=not (no_progress or as_json))
    except (FarmError, ValueError) as e:
        fail(str(e))
    if as_json:
        json_out(summary)
        return
    if no_wait:
        click.echo(f"job {summary['job']}: {summary['queued_shards']} shards of pool {pool} queued; "
                   f"follow it with `farm job status {summary['job']}`")
        return
    click.echo(f"pool {pool}: {summary['count']} captchas in {summary['store']} "
               f"({summary['generated']} new, {summary['captchas_per_second']:.1f}/s)")
    if summary["generated"]:
        donors = f" (with donors {', '.join(summary['donors'])})" if summary.get("donors") else ""
        click.echo(f"substitute {summary['substitute']}{donors} reads {summary['substitute_accuracy_clean']:.1%} "
                   f"clean -> {summary['substitute_accuracy_adversarial']:.1%} adversarial; "
                   f"mean SSIM {summary['mean_ssim']:.3f}, mean L-inf {summary['mean_linf'] * 255:.1f}/255")


def _source_spec(spec, source: Path, count: int | None, store, solver):
    """The spec of a pool perturbing a folder's captchas, once the folder is checked and in the store."""
    from dataclasses import replace

    from farm.storage.folder import import_source, read_folder
    from farm.core.spec import FOLDER

    try:
        data = read_folder(source, solver.charset)  # answers must be in the substitute's alphabet
    except ValueError as e:
        fail(str(e))
    for note in data.notes:
        click.echo(f"source {data.name}: {note}", err=True)
    if count is not None and count > len(data.texts):
        fail(f"--count: {source} holds {len(data.texts)} captchas, fewer than {count}")
    return replace(spec, scheme=FOLDER, source=import_source(store, data), count=count or len(data.texts))
