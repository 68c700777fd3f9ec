"""One job function: `submit` checks a pool's job, writes its manifest (and record), runs it, summarises.

Where the shards are computed is the runner's business: farm.ops.local_runner.LocalRunner in this
process, or the farm's queue (workers.producer.CeleryRunner), which the library never imports: it
is registered under the entry point group `captchafarm.runners` (pyproject.toml) and found by
`farm_runner` when FARM_BROKER is set. Both runners write shards with farm.ops.shard, so the same
secret and spec give the same bytes whichever ran them.

A farm job names its substitute by version and sha256 (`job_substitute`: no model is loaded to
name it): pinned when the operator named one (--checkpoint, --version), its workers load exactly
that version; otherwise it follows CURRENT, each shard made with the version CURRENT names when
it starts (a promotion mid-job reaches the later shards).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from farm.core.checkpoint import Solver, read_solver_dir, sha256_hex
from farm.core.charset import Charset
from farm.core.seeds import KEYED, derivation
from farm.core.spec import PoolSpec
from farm.core.zoo import card_ensemble
from farm.exceptions import CheckpointError, JobError, PoolError, SettingError
from farm.ops.local_runner import LocalRunner
from farm.ops.shard import check_reads, copy_versions, donor_names
from farm.storage import jobs, registry
from farm.storage.jobs import FOLLOWS_CURRENT, PINNED
from farm.storage.layout import check_pool_name
from farm.storage.manifest import merged_spec, pending_shards, read_manifest, write_manifest
from farm.storage.sources import spec_charset, spec_mode, supply
from farm.storage.store import Store

__all__ = ["Runner", "Job", "submit", "summarise", "generate_pool", "farm_runner", "job_substitute", "growth_jobs",
           "check_spec_matches", "check_keyed", "RUNNERS"]

RUNNERS = "captchafarm.runners"  # entry point group; workers/ registers "celery" there (pyproject.toml)
STAGES = ("render", "attack", "encode", "store")


@dataclass
class Job:
    """What a runner is given: the pool, its spec, the shards to write, the substitute, and the farm's record."""

    pool: str
    spec: PoolSpec
    todo: list[int]
    substitute: jobs.Substitute
    charset: Charset  # the substitute's: readings are compared with answers by its case rule
    record: dict | None = None  # jobs/<id>/job.json, for a remote runner


class Runner(Protocol):
    """Where a job's shards are computed."""

    remote: bool  # elsewhere: the job gets a record in the store, and may be left running (wait=False)

    def check(self, store: Store) -> None:
        """Refuse before anything is written (a broker that does not answer, a shared store without FARM_SECRET)."""

    def run(self, store: Store, job: Job, progress: bool, wait: bool) -> list[dict] | None:
        """The shards of job.todo written; with `wait`, one result per shard (farm.ops.shard.shard_outcome's
        fields, `skipped`, `shard`), else None once they are handed over."""


def submit(store: Store, pool: str, spec: PoolSpec, substitute, runner: Runner, *, follows: str = PINNED,
           grow: bool = False, wait: bool = True, progress: bool = True) -> dict:
    """Generate (or complete, or grow) a pool with `runner`; returns the summary `farm generate` prints.

    `substitute`: a loaded Solver or a registry.Reference (version, sha256, charset, card).
    `follows`: what a remote runner's workers do (jobs.Substitute). `grow`: `spec` may hold more
    captchas than the pool's manifest (check_spec_matches). `wait` False (remote runners only):
    return once the shards are queued, with the job's id.
    """
    check_pool_name(pool)
    spec.validate()
    if not wait and not runner.remote:
        raise ValueError("wait: only a job run elsewhere (the farm) can be left running")
    check_reads(substitute, spec_charset(spec, store), f"pool {pool!r} ({spec.scheme})")
    generator = check_generator(store, spec, substitute)
    check_spec_matches(store, pool, spec, grow=grow)
    runner.check(store)
    write_manifest(store, pool, spec, substitute, status="generating")
    todo = pending_shards(store, pool, spec)
    named = jobs.Substitute(substitute.version, substitute.sha256, follows)
    record = jobs.create(store, pool, spec, named, todo) if runner.remote else None
    started = time.perf_counter()
    results = runner.run(store, Job(pool, spec, todo, named, substitute.charset, record), progress=progress, wait=wait)
    if results is None:
        return {"job": record["id"], "pool": pool, "store": store.url, "count": spec.count,
                "queued_shards": len(todo), "shards": spec.shards, "waited": False}
    done = [r for r in results if not r["skipped"]]
    manifest = write_manifest(store, pool, spec, substitute, status="complete",
                              shard_substitutes={r["shard"]: r["substitute"] for r in done})
    summary = summarise(manifest, spec.shards - len(todo), results, time.perf_counter() - started, store.url)
    summary.update(substitute=substitute.version, donors=donor_names(spec, substitute.card),
                   hardened=copy_versions(substitute.card), generator=generator)
    if record is not None:
        summary["job"] = record["id"]
    if not runner.remote:  # the stages are timed in this process; the farm's are in its metrics
        stages = Counter()
        for r in done:
            stages.update(r.get("stages", {}))
        summary["stage_seconds"] = {stage: round(stages[stage], 2) for stage in STAGES}
    return summary


def check_generator(store: Store, spec: PoolSpec, substitute) -> str | None:
    """For the generator method, the version whose generator makes the pool (registry.generator_version);
    PoolError before anything is written when there is none, or when a colour generator would meet grey
    captchas. None for every other method."""
    if spec.method != "generator":
        return None
    owner = registry.generator_version(store, substitute.version)
    if owner is None:
        raise PoolError(f"method: substitute {substitute.version} has no trained generator, nor has any version it "
                        f"was made from; train one with `farm generator train`, or choose another --method")
    channels = ((registry.card(store, owner).get("generator") or {}).get("config") or {}).get("channels", 1)
    if channels == 3 and spec_mode(spec, store) == "L":
        drawn, scheme = ((f"{spec.scheme} draws grey ones", spec.scheme) if spec.source is None
                         else ("the source folder's are grey", "classic_grey"))
        raise PoolError(f"method: the generator of {owner} was trained on colour captchas and {drawn}; train one on "
                        f"grey captchas (`farm generator train --scheme {scheme}`)")
    return owner


def summarise(manifest: dict, complete_before: int, results: list[dict], seconds: float, store_url: str) -> dict:
    """The closing summary of a job from its shards' results (the keys every caller and test reads)."""
    done = [r for r in results if not r["skipped"]]
    n = sum(r["count"] for r in done)

    def share(name: str) -> float | None:
        return round(sum(r[name] for r in done) / n, 4) if n else None

    def mean(name: str, digits: int) -> float | None:
        return round(sum(r[name] * r["count"] for r in done) / n, digits) if n else None

    substitutes = Counter()
    for r in done:
        substitutes[r["substitute"]["version"]] += r["count"]
    return {"pool": manifest["pool"], "store": store_url, "count": manifest["complete"], "generated": n,
            "skipped_shards": complete_before + sum(r["skipped"] for r in results), "seconds": round(seconds, 2),
            "captchas_per_second": round(n / seconds, 2) if n and seconds else 0.0,
            "substitutes": dict(substitutes),
            "substitute_accuracy_clean": share("substitute_solved_clean"),
            "substitute_accuracy_adversarial": share("substitute_solved"),
            "mean_ssim": mean("ssim", 4), "mean_linf": mean("linf", 5), "waited": True}


def generate_pool(store: Store, pool: str, spec: PoolSpec, solvers: list[Solver], secret: bytes,
                  device: str = "cpu", progress: bool = True, processes: int | None = None,
                  grow: bool = False) -> dict:
    """submit with the in-process runner: a pool generated here with `solvers` (the substitute first)."""
    return submit(store, pool, spec, solvers[0], LocalRunner(solvers, secret, device, processes), grow=grow,
                  progress=progress)


def farm_runner(name: str = "celery") -> Runner:
    """The runner registered as `name` in the entry point group RUNNERS: the farm's queue, never imported by name."""
    found = list(entry_points(group=RUNNERS, name=name))
    if not found:
        raise JobError(f"FARM_BROKER: set, but no runner {name!r} is registered under the entry point group {RUNNERS} "
                       f"(the farm's Celery side, workers/, registers it when captchafarm is installed); install "
                       f"captchafarm again (`pip install -e .` in a checkout writes its entry points), or unset "
                       f"FARM_BROKER to generate in this process")
    try:
        return found[0].load()()
    except ImportError as e:
        raise JobError(f"FARM_BROKER: the runner {found[0].value} cannot be imported ({e}); install the farm's "
                       f"dependencies (`pip install captchafarm`), or unset FARM_BROKER") from e


def job_substitute(store: Store, checkpoint: Path | None = None,
                   version: str | None = None) -> tuple[registry.Reference, str]:
    """The substitute of a farm job and what it follows, from the registry's cards alone (no model is loaded).

    A named version (or a --checkpoint folder, found in the registry by its weights' sha256) is
    pinned; otherwise CURRENT is followed, the bundled substitute published as v1 in an empty
    store (the one write: `farm generate` and `farm pool refill` are the registry's write paths).
    """
    if checkpoint is not None and version is not None:
        raise SettingError("--checkpoint, --version: name the substitute once")
    if checkpoint is not None:
        version = _published_as(store, Path(checkpoint))
    if version is not None:
        return registry.reference(store, version), PINNED
    registry.ensure_current(store)
    return registry.reference(store), FOLLOWS_CURRENT


def _published_as(store: Store, folder: Path) -> str:
    """The registry version holding a checkpoint folder's weights and donors: the farm's workers load versions."""
    weights, card = read_solver_dir(folder)
    version = registry.find_sha256(store, sha256_hex(weights), card_ensemble(card))
    if version is None:
        raise CheckpointError(f"--checkpoint: {folder} is not in the registry of {store.url}, and the farm's workers "
                              f"load their substitute from it; publish it first (`farm checkpoint publish {folder} "
                              f"--no-current`), then pass --version with the version it prints")
    return version


def growth_jobs(store: Store, runner: Runner) -> Callable[[str, PoolSpec], dict]:
    """generate(pool, spec) for farm.ops.refill.refill on the farm: each growth a job following CURRENT, not waited for.

    CURRENT is read (never published) when a pool grows: a refill with nothing to grow needs none.
    """
    def grow(pool: str, spec: PoolSpec) -> dict:
        return submit(store, pool, spec, registry.reference(store), runner, follows=FOLLOWS_CURRENT, grow=True,
                      wait=False, progress=False)
    return grow


def check_spec_matches(store: Store, pool: str, spec: PoolSpec, grow: bool = False) -> None:
    """A pool is extended or completed only with the spec it was started with; `grow` lets its count rise.

    Growing (farm.ops.refill) appends whole shards: captcha i stays in shard i // shard_size, so every
    stored shard keeps its captchas and its bytes. A pool whose last shard is partial cannot grow:
    that shard would have to be written again, with other captchas in it. A pool of a source
    folder holds each of its captchas once, so never more than the folder. A growth asking for
    fewer than the pool holds was overtaken by another: it only helps finish the shards it names.
    """
    most = supply(spec, store)
    if most is not None and spec.count > most:
        raise PoolError(f"pool: {pool!r} asks for {spec.count} captchas but its source folder holds {most}; a "
                        f"source pool perturbs each of its captchas once: import a larger folder as a new pool "
                        f"(`farm generate --source DIR`)")
    try:
        existing = read_manifest(store, pool)
    except PoolError:
        return
    check_keyed(pool, existing)
    merged_spec(pool, existing, spec)  # PoolError when anything but the count differs
    old = PoolSpec.from_dict(existing["spec"]).count
    if spec.count == old or (grow and spec.count < old):  # asking for less: a concurrent growth got there first
        return
    if not grow:
        raise PoolError(f"pool: {pool!r} already exists with another spec (differs in count: it holds {old}, "
                        f"perhaps grown by `farm pool refill`); choose a new --pool name or repeat it with "
                        f"--count {old}")
    if old % spec.shard_size:
        raise PoolError(f"pool: {pool!r} ends in a partial shard ({old} captchas in shards of "
                        f"{spec.shard_size}), which growing would rewrite; only pools whose --count is a "
                        f"multiple of --shard-size grow")


def check_keyed(pool: str, manifest: dict) -> None:
    """New captchas go only into pools keyed by FARM_SECRET: never mixed into a pool anyone can render again."""
    if derivation(manifest) != KEYED:
        raise PoolError(f"pool: {pool!r} was made before captchas were keyed by FARM_SECRET: anyone with the public "
                        f"package can render its captchas again from its seed and read their answers, so it is "
                        f"never grown or completed. Generate a new pool to replace it, move platforms to it, then "
                        f"remove this one (`farm pool delete {pool}`)")
