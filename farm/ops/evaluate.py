"""How well solvers read captchas: exact-match accuracy on fresh renders per scheme, and on a pool after clean-ups."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from farm.core.checkpoint import Solver
from farm.core.dataset import EVALUATION, CaptchaStream, batches
from farm.core.model import to_tensor
from farm.core.preprocess import Chain, colour_chains, parse_chain, parse_chains
from farm.core.preprocess.colour import is_colour
from farm.exceptions import SettingError
from farm.storage.pools import pool_images

__all__ = ["scheme_accuracy", "sequence_accuracy", "load_pool", "pool_chains", "pool_accuracy", "chain_accuracy",
           "worst_chain", "worst_per_conversion", "pool_report"]

BATCH = 200  # images a chain's real operations take at once: bounds the numpy copies of per-image steps


def sequence_accuracy(readings: list[str], truths: list[str]) -> float:
    """Share of captchas read exactly (the paper's measure)."""
    if not truths:
        return float("nan")
    return sum(r == t for r, t in zip(readings, truths)) / len(truths)


def scheme_accuracy(solver: Solver, schemes: list[str], count: int, seed: int = 0, workers: int = 1,
                    batch_size: int = 100, progress: bool = False, purpose: int = EVALUATION) -> dict:
    """{"<scheme>": {"count", "accuracy"}} on `count` fresh captchas of each scheme."""
    if count <= 0:
        raise SettingError(f"count: must be positive, got {count}")
    size = (solver.model.config.input_height, solver.model.config.input_width)
    results = {}
    for name in schemes:
        batch_size_here = min(batch_size, count)
        stream = CaptchaStream({name: 1.0}, batch_size_here, seed, size, purpose,
                               stop=math.ceil(count / batch_size_here), grey=solver.model.config.grey)
        readings, truths = [], []
        bar = tqdm(total=count, desc=f"evaluate {name}", unit="captcha", disable=not progress, leave=False)
        for batch in batches(stream, workers):
            keep = min(len(batch.texts), count - len(truths))
            readings += solver.read(batch.images[:keep])
            truths += [solver.charset.normalize(t) for t in batch.texts[:keep]]  # case-blind readers
            bar.update(keep)
        bar.close()
        results[name] = {"count": len(truths), "accuracy": sequence_accuracy(readings, truths)}
    return results


def load_pool(store, pool: str, limit: int | None = None):
    """(key records, adversarial images (N, 1 or 3, H, W) float, clean images of the same captchas)."""
    records, clean, adversarial = pool_images(store, pool, limit)
    return records, to_tensor(adversarial), to_tensor(clean)


def pool_chains(chains: list[str], images: torch.Tensor) -> list[str]:
    """The chains a pool is read after: on grey images `chains` as given; on colour ones `none` (if
    given) and colour_chains of the others, every conversion alone and before each clean-up."""
    if not is_colour(images):
        return list(chains)
    cleanups = [c for c in chains if c != "none"]
    return [*(["none"] if "none" in chains else []), *(colour_chains(cleanups) if cleanups else ())]


def pool_accuracy(solvers: dict, records: list[dict], adversarial, clean, chains: list[str],
                  progress: bool = False) -> dict:
    """{solver: {"clean": {chain: acc}, "adversarial": {chain: acc}}} over a pool's captchas.

    Each chain's real operations run once per image set and every solver reads the result;
    `none` is the images as they are (colour ones as a bot loads them: grey601).
    """
    truths = [r["answer"] for r in records]
    results = {name: {} for name in solvers}
    bar = tqdm(total=2 * len(chains), desc="evaluate pool", unit="chain", disable=not progress, leave=False)
    for label, images in (("clean", clean), ("adversarial", adversarial)):
        for name, row in chain_accuracy(solvers, truths, images, chains, bar, label).items():
            results[name][label] = row
    bar.close()
    return results


def chain_accuracy(solvers: dict, truths: list[str], images, chains: list[str], bar=None, label: str = "") -> dict:
    """{solver: {chain: acc}} of one image set (N, C, H, W) after each chain; `bar` (tqdm) counts the chains.

    Each chain's real operations run once. On colour images the chains that start with the same
    conversion (grey601 for those that name none) share one conversion of the set, kept only while
    they run.
    """
    in_colour, parsed = is_colour(images), parse_chains(chains)
    groups: dict[str | None, tuple] = {}  # conversion name -> (its step, [(chain name, steps after it)])
    for chain in parsed:
        conversion, rest = chain.split(in_colour)
        key = None if conversion is None else conversion.name
        groups.setdefault(key, (conversion, []))[1].append((chain.name, rest))
    read = {}
    for conversion, members in groups.values():
        converted = images if conversion is None else _in_batches(Chain(conversion.name, (conversion,)), images)
        for chain_name, rest in members:
            if bar is not None:
                bar.set_postfix_str(f"{label} {chain_name}")
            cleaned = _in_batches(rest, converted)
            read[chain_name] = {name: round(sequence_accuracy(solver.read(cleaned), truths), 4)
                                for name, solver in solvers.items()}
            if bar is not None:
                bar.update()
    return {name: {chain.name: read[chain.name][name] for chain in parsed} for name in solvers}  # in the order given


def _in_batches(chain: Chain, images: torch.Tensor) -> torch.Tensor:
    if not chain.steps:
        return images
    return torch.cat([chain.apply(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def worst_chain(row: dict) -> dict | None:
    """The clean-up under which a solver reads the most adversarial captchas (the first on a tie), or None.

    `row` is one solver's pool_accuracy; the images as they are (`none`) are not a clean-up.
    """
    chains = [c for c in row["adversarial"] if c != "none"]
    if not chains:
        return None
    chain = max(chains, key=lambda c: row["adversarial"][c])  # max keeps the first of equals
    return {"chain": chain, "clean": row["clean"][chain], "adversarial": row["adversarial"][chain]}


def worst_per_conversion(row: dict) -> dict:
    """{conversion: worst_chain among the chains a colour image meets through it}, for a colour pool's row.

    A chain naming no conversion goes through grey601 on colour, and counts under it; `none` does not count.
    """
    groups: dict[str, dict] = {}
    for chain in row["adversarial"]:
        if chain == "none":
            continue
        conversion = parse_chain(chain).split(True)[0].name
        part = groups.setdefault(conversion, {"clean": {}, "adversarial": {}})
        part["clean"][chain], part["adversarial"][chain] = row["clean"][chain], row["adversarial"][chain]
    return {conversion: worst_chain(part) for conversion, part in groups.items()}


def pool_report(solvers: dict, roles: dict, records: list[dict], adversarial, clean, chains: list[str],
                progress: bool = False) -> dict:
    """What `farm evaluate --pool --json` prints but the pool's name, count and substitute.

    A colour pool (3-channel images) is read after colour_chains of `chains`, and each solver's row
    gains `worst_per_conversion`; the report gains `colour` and `conversions`. A grey pool's is as before.
    """
    in_colour = is_colour(adversarial)
    chains = pool_chains(chains, adversarial)
    table = pool_accuracy(solvers, records, adversarial, clean, chains, progress=progress)
    for name, row in table.items():
        row.update(role=roles[name], worst=worst_chain(row))
        if in_colour:
            row["worst_per_conversion"] = worst_per_conversion(row)
    result = {"roles": roles, "accuracy": table, "chains": [c for c in chains if c != "none"],
              "mean_ssim": round(sum(r["ssim"] for r in records) / len(records), 4),
              "mean_ssim_glyph": round(sum(r.get("ssim_glyph", 1.0) for r in records) / len(records), 4),
              "max_linf": max(r["linf"] for r in records)}
    if in_colour:
        result["colour"] = True
        result["conversions"] = list(next(iter(table.values()))["worst_per_conversion"])
    return result
