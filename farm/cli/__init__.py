"""The `farm` command: train and evaluate substitutes, read captchas, generate adversarial pools."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import click

from farm import __version__
from farm.core.defaults import GENERATE_DEFAULTS
from farm.cli.common import Fraction, checkpoint_option, fail, json_out, open_store_or_fail, store_option, \
    substitute, version_option

DEFAULT_SEED = 2026


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110,
                                "terminal_width": 110})
@click.version_option(__version__, prog_name="farm")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """captchafarm: adversarial text captchas that solving bots misread and people still read.

    Runs embedded by default: a local folder as object store (FARM_STORE, default ./farm-data)
    and the substitute solver bundled with the package.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint folder to write (model.safetensors, card.json, train-state/).")
@click.option("--mix", default="classic=0.7,lines=0.15,wave=0.15", show_default=True,
              help="Schemes and their weights in the training data.")
@click.option("--samples", default=240_000, show_default=True, help="Distinct captchas rendered for training.")
@click.option("--steps", default=12_000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option("--seed", default=0, show_default=True, help="Seeds the data, the weights and the order.")
@click.option("--workers", default=2, show_default=True, help="Processes that render the training set.")
@click.option("--eval-every", default=1000, show_default=True, help="Steps between validation and saved state.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/train-state when it exists.")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="A folder of the platform's captchas with their answers (labels.jsonl, labels.csv or the "
                   "file names; see docs/schemes.md), mixed into every batch.")
@click.option("--data-weight", default=0.5, show_default=True,
              help="Share of each batch from --data; 1 trains on the folder alone (--mix unused).")
@click.option("--alphabet", default=None,
              help="What the model reads: default, digits, upper, lower, lower+digits, mixed, or the characters "
                   "themselves [default: the alphabet of --mix's schemes]. Answers in one case are read "
                   "case-blind when the alphabet has only that case.")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def train(out, mix, samples, steps, batch_size, lr, seed, workers, eval_every, resume, data, data_weight, alphabet,
          as_json):
    """Train a CRNN substitute on a mix of freshly rendered schemes and, with --data, a platform's own captchas.

    \b
    farm train --out sub                                     the bundled recipe (25 min on 2 cores)
    farm train --out sub --data mine/ --data-weight 1 --alphabet lower+digits --steps 4000
    """
    from farm.exceptions import FarmError
    from farm.ops.train import TrainConfig, parse_mix, train as run

    try:
        config = TrainConfig(mix=parse_mix(mix), samples=samples, steps=steps, batch_size=batch_size, lr=lr,
                             seed=seed, workers=workers, eval_every=eval_every, data=data, data_weight=data_weight,
                             alphabet=alphabet).validate()
    except ValueError as e:
        fail(str(e))
    command = "farm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        card = run(config, out, resume=resume, command=command)
    except (FarmError, ValueError) as e:
        fail(str(e))
    if as_json:
        json_out(card)
    else:
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["metrics"]["accuracy"].items())
        click.echo(f"wrote {out} in {card['training']['seconds']:.0f} s; accuracy: {acc}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@checkpoint_option
@version_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, text}.")
def solve(images, checkpoint, version, store_url, as_json):
    """Print the substitute's reading of PNG or JPEG files (up to 4096x4096 pixels; each is resized for the model)."""
    arrays = [_grey_image(path) for path in images]  # before the model loads: a bad file fails fast
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


def _grey_image(path: Path):
    """A captcha file as uint8 (H, W); a file larger than MAX_SOLVE_PIXELS is refused before decoding."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    too_large = (f"larger than farm solve reads ({MAX_SOLVE_PIXELS} pixels at most, e.g. 4096x4096); "
                 f"crop it to the captcha")
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_SOLVE_PIXELS:
                fail(f"{path}: {width}x{height} pixels is {too_large}")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except Image.DecompressionBombError:  # PIL refuses the largest before we see the size
        fail(f"{path}: {too_large}")
    except (UnidentifiedImageError, OSError) as e:
        fail(f"{path}: not a readable image ({e})")


@main.command()
@click.option("--scheme", "schemes", multiple=True, help="Scheme to evaluate (repeatable; default: all).")
@click.option("--count", default=500, show_default=True, help="Fresh captchas per scheme.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed of the fresh captchas (never used in training).")
@click.option("--pool", default=None, help="Evaluate on a generated pool instead: as it is and after the attacker's clean-up chains.")
@click.option("--limit", default=None, type=int, help="With --pool: at most this many captchas.")
@click.option("--zoo/--no-zoo", "with_zoo", default=True, show_default=True,
              help="With --pool: also every trained zoo solver, donors and held-out marked.")
@click.option("--preprocess/--no-preprocess", "with_preprocess", default=True, show_default=True,
              help="With --pool: also after each attacker clean-up chain (--no-preprocess: as they are only).")
@click.option("--chain", "chains", multiple=True,
              help="With --pool: a clean-up chain, steps joined by '>' (quote it), e.g. 'median3>otsu>open3' "
                   "(repeatable; default: farm.core.preprocess.CHAINS, every family of the attacker's toolbox).")
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
    """
    from farm.ops.evaluate import scheme_accuracy
    from farm.core.schemes import scheme_names

    if pool:
        chains = _pool_chains(chains, with_preprocess)  # before the models load: a typo fails fast
        solver = substitute(store_url, checkpoint, version)
        _evaluate_pool(solver, open_store_or_fail(store_url), pool, limit, with_zoo, chains, as_json)
        return
    if chains:
        fail("--chain: clean-up chains apply to a pool; add --pool P")
    solver = substitute(store_url, checkpoint, version)
    try:
        names = list(schemes) or scheme_names()
        result = {"substitute": solver.version, "seed": seed,
                  "schemes": scheme_accuracy(solver, names, count, seed=seed, progress=not as_json)}
    except ValueError as e:
        fail(str(e))
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
        fail("--chain: --no-preprocess reads the pool as it is only; drop one of the two")
    try:
        return [c.name for c in parse_chains(["none", *(chains or (CHAINS if with_preprocess else ()))])]
    except ValueError as e:
        fail(f"--chain: {str(e).removeprefix('chain: ')}")


def _evaluate_pool(solver, store, pool, limit, with_zoo, chains, as_json):
    from farm.ops.evaluate import load_pool, pool_accuracy, worst_chain
    from farm.exceptions import FarmError
    from farm.core.zoo import load_member, members, zoo_path

    try:
        records, adversarial, clean = load_pool(store, pool, limit)
    except (FarmError, ValueError) as e:
        fail(str(e))
    solvers, roles = {"substitute": solver}, {"substitute": "substitute"}
    if with_zoo:
        for m in members():
            if (zoo_path() / m.name / "card.json").exists():
                solvers[m.name], roles[m.name] = load_member(m.name), m.role
    table = pool_accuracy(solvers, records, adversarial, clean, chains, progress=not as_json)
    for name, row in table.items():
        row.update(role=roles[name], worst=worst_chain(row))
    result = {"pool": pool, "count": len(records), "substitute": solver.version, "roles": roles, "accuracy": table,
              "chains": chains[1:],
              "mean_ssim": round(sum(r["ssim"] for r in records) / len(records), 4),
              "mean_ssim_glyph": round(sum(r.get("ssim_glyph", 1.0) for r in records) / len(records), 4),
              "max_linf": max(r["linf"] for r in records)}
    if as_json:
        json_out(result)
        return
    click.echo(f"pool {pool}: {len(records)} captchas, substitute {solver.version}, mean SSIM {result['mean_ssim']:.3f} "
               f"(glyph region {result['mean_ssim_glyph']:.3f}), max L-inf {result['max_linf'] * 255:.0f}/255")
    _echo_pool_table(table, chains)


def _echo_pool_table(table: dict, chains: list[str]) -> None:
    """Chains down, solvers across (role under the name), then each solver's worst chain."""
    width = max(len(c) for c in chains) + 2
    click.echo("accuracy clean -> adversarial, as they are (none) and after each clean-up chain")
    click.echo(f"  {'chain':{width}s}" + "".join(f"{name:>16s}" for name in table))
    click.echo(f"  {'':{width}s}" + "".join(f"{row['role']:>16s}" for row in table.values()))
    for chain in chains:
        cells = "".join(f"  {row['clean'][chain]:6.1%} ->{row['adversarial'][chain]:6.1%}" for row in table.values())
        click.echo(f"  {chain:{width}s}{cells}")
    if len(chains) > 1:
        click.echo("worst clean-up per solver: the chain under which it reads the most adversarial captchas")
        for name, row in table.items():
            worst = row["worst"]
            click.echo(f"  {name:14s} {row['role']:10s} {worst['chain']:{width}s} "
                       f"{worst['clean']:6.1%} ->{worst['adversarial']:6.1%}")


@main.command()
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
@store_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
@click.option("--no-wait", is_flag=True, help="Farm only (FARM_BROKER): queue the shards, print the job id, return.")
def generate(pool, count, scheme, source, method, norm, eps, alpha, steps, mask, margin, random_start, smoothing,
             diversity, early_stop, decay, eps_glyph, ensemble, shard_size, seed, checkpoint, store_url, no_progress, as_json,
             no_wait):
    """Generate a pool of adversarial captchas (re-run with the same arguments to complete it)."""
    from farm.storage.config import device, secret
    from farm.exceptions import FarmError
    from farm.ops.submit import generate_pool
    from farm.core.spec import MASKS, PoolSpec
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
    solver = substitute(store_url, checkpoint, None, publish=True)
    if source is not None:
        spec = _source_spec(spec, source, count, store, solver)
    try:
        if farm:  # the distributed farm; Celery is imported only here
            from workers.producer import generate_on_farm
            summary = generate_on_farm(store, pool, spec, solver, wait=not no_wait, progress=not (no_progress or as_json))
        else:
            from farm.ops.shard import attack_solvers
            summary = generate_pool(store, pool, spec, attack_solvers(spec, solver, device()), secret(store),
                                    device=device(), progress=not (no_progress or as_json))
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


@main.command()
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


@main.command()
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


from farm.cli._groups import register_all  # noqa: E402  (the group must exist first)

register_all(main)

if __name__ == "__main__":
    main()
