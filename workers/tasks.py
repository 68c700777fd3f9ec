"""The farm's tasks, thin: parse the arguments, call farm, record metrics.

`generate_shard(pool, shard, count, spec, job=, substitute=)` (the design's contract) claims one
shard and writes it with farm.ops.shard.take_shard and compute_shard, the very functions an
embedded run calls, so both modes write the same bytes and compute a shard once between them.
Its substitute is the job's (farm.storage.jobs.Substitute): a pinned version is loaded exactly,
sha256-checked; one following CURRENT is read before each shard and a model loaded only when
its sha256 changed. Reading never publishes: with an empty registry the shard fails and says
which command publishes one. `finetune(answer_batches, base_version)` runs
farm.ops.finetune.finetune, the function `farm finetune` calls, and publishes on top of the base;
the registry's conditional write of CURRENT decides between two fine-tunes that finish together,
and the loser keeps its result as an unpromoted version. A fine-tune that published on top of a
version with a trained generator queues `train_generator` for the new one, with the same recipe,
so `--method generator` keeps pace with the substitute. `train_generator(config)` runs
farm.ops.generator_training.train_for_store, what `farm generator train` calls, on the finetune queue.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from pathlib import Path

from celery import Task, shared_task

from farm.core.checkpoint import Solver
from farm.core.defaults import FinetuneConfig
from farm.core.spec import PoolSpec
from farm.exceptions import AnswersError, CheckpointError, StoreError
from farm.ops.shard import attack_solvers, compute_shard, release_shard, take_shard
from farm.ops.submit import check_keyed
from farm.storage import jobs, registry
from farm.storage.config import device, secret
from farm.storage.layout import check_pool_name, shard_complete
from farm.storage.manifest import read_manifest
from farm.storage.store import Store, open_store
from workers.app import FINETUNE, GENERATE_SHARD, REFILL_POOLS, TRAIN_GENERATOR, visibility_timeout
from workers.metrics import METRICS

__all__ = ["generate_shard", "finetune", "train_generator", "refill_pools", "parse_shard", "parse_finetune",
           "current_substitute", "job_substitute", "generator_work"]

log = logging.getLogger(__name__)
STORE_RETRIES = 3  # on top of botocore's own retries: an outage of the store, not a blip, fails a shard
HELD_RETRY_SECONDS = 60  # a shard another worker holds is looked at again this often (sooner when its claim expires)


class _Held:
    """What a worker process keeps from task to task: its store client, CURRENT's solver, the one it served last."""

    store: Store | None = None
    solver: Solver | None = None
    served: Solver | None = None


_held = _Held()


def _store() -> Store:
    if _held.store is None:
        _held.store = open_store()  # FARM_STORE; one client per process, reused (boto3 clients are costly)
    return _held.store


def current_substitute(store: Store, dev: str) -> Solver:
    """CURRENT's solver; loaded only when its version changed, the held one kept when the new one fails."""
    held = _held.solver
    solver, error = registry.refresh(store, held, dev)
    if error is not None:
        METRICS.record_checkpoint("failed")
    _held.solver = solver
    return solver


def job_substitute(store: Store, named: jobs.Substitute | None, dev: str) -> Solver:
    """The solver a shard of a job is made with: its pinned version exactly, or CURRENT's (messages without one follow it)."""
    if named is None or named.follows == jobs.FOLLOWS_CURRENT:
        solver = current_substitute(store, dev)
    else:
        solver = registry.load(store, named.version, dev)  # verified against its card's sha256, cached
        if solver.sha256 != named.sha256:
            raise CheckpointError(f"substitute: the job pinned {named.version} with sha256 {named.sha256[:12]}…, but "
                                  f"{named.version} in {store.url} has {solver.sha256[:12]}…; the registry was changed "
                                  f"behind its back: submit the job again with the version to use")
    if solver is _held.served:
        METRICS.record_checkpoint("unchanged")
    else:
        METRICS.record_checkpoint("loaded", solver.version, solver.card.get("ensemble") or [])
        log.info("serving substitute %s (sha256 %s)", solver.version, solver.sha256[:12])
    _held.served = solver
    return solver


def parse_shard(pool: str, shard: int, count: int, spec: dict) -> PoolSpec:
    """The task's JSON arguments as a validated spec; ValueError names what does not fit.

    `spec` is a stored spec (PoolSpec.to_dict(), as the producer sends), or names a preset and the
    fields that differ ({"preset": "recommended", "count": ...}), expanded as `farm generate` does.
    """
    check_pool_name(pool)
    if not isinstance(spec, dict):
        raise ValueError(f"spec: must be a JSON object of PoolSpec fields, not {type(spec).__name__}")
    parsed = PoolSpec.from_dict(spec).validate()
    if not isinstance(shard, int) or not 0 <= shard < parsed.shards:
        raise ValueError(f"shard: {shard!r} is not a shard of a {parsed.shards}-shard pool")
    if count != len(parsed.indices(shard)):
        raise ValueError(f"count: shard {shard} holds {len(parsed.indices(shard))} captchas, the task says {count!r}")
    return parsed


def parse_finetune(store: Store, answer_batches, base_version, config,
                   promote=True) -> tuple[list[str], FinetuneConfig]:
    """The fine-tune task's JSON arguments checked against the store: (answer keys, settings).

    A ValueError names the argument at fault before any model is loaded.
    """
    from farm.ops.finetune import check_base, resolve_batches

    if not isinstance(answer_batches, list) or not all(isinstance(b, str) and b for b in answer_batches):
        raise ValueError(f"answer_batches: must be a list of batch names or keys, or [\"all\"] "
                         f"(got {answer_batches!r})")
    if base_version is not None and (not isinstance(base_version, str) or base_version not in registry.versions(store)):
        raise ValueError(f"base_version: {base_version!r} is not a version in {store.url}; name one that "
                         f"`farm checkpoint list` shows, or null for CURRENT")
    if not isinstance(promote, bool):
        raise ValueError(f"promote: must be true or false (got {promote!r})")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"config: must be a JSON object of fine-tune settings (got {type(config).__name__})")
    try:
        settings = FinetuneConfig.from_dict(config or {}).validate()
    except TypeError as e:  # a setting of the wrong type, compared with its bound
        raise ValueError(f"config: a setting has the wrong type ({e})") from None
    try:
        keys = resolve_batches(store, answer_batches)
    except AnswersError as e:
        raise ValueError(f"answer_batches: {str(e).removeprefix('answers: ')}") from None
    try:  # last: in an empty store it publishes the bundled substitute as CURRENT
        check_base(store, base_version, promote, flag="promote=false")
    except ValueError as e:
        raise ValueError(f"base_version: {str(e).removeprefix('base: ')}") from None
    return keys, settings


class ShardTask(Task):
    """Retries a store outage with backoff; a task that gives up is counted and reported to its job."""

    autoretry_for = (StoreError,)
    retry_backoff = True
    max_retries = STORE_RETRIES

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        METRICS.task_failures.labels(self.name).inc()
        job = kwargs.get("job")
        if not job or len(args) < 2:
            return
        try:  # the producer stops waiting and tells the operator why
            jobs.record_failure(_store(), job, args[1], f"{type(exc).__name__}: {exc}", self.request.hostname or "")
        except Exception:
            log.exception("could not record the failure of shard %s of job %s", args[1], job)


@shared_task(name=GENERATE_SHARD, base=ShardTask, bind=True)
def generate_shard(self, pool: str, shard: int, count: int, spec: dict, job: str | None = None,
                   substitute: dict | None = None) -> dict:
    """Write shard `shard` (`count` captchas) of a pool; a complete shard is skipped. Returns no answers.

    `substitute`: the job's {version, sha256, follows} (farm.storage.jobs.Substitute); none follows CURRENT.

    The shard is claimed first (farm.storage.claims), for the visibility timeout: a shard another worker
    holds (queued twice by concurrent growths, or a dead worker's redelivered before its claim
    expired) is tried again later, until it is complete or its claim can be taken over.
    """
    started = time.perf_counter()
    parsed = parse_shard(pool, shard, count, spec)
    named = None if substitute is None else jobs.Substitute.from_dict(substitute)  # malformed: fails before the claim
    store = _store()
    if shard_complete(store, pool, shard):  # redelivered or re-submitted: skip before loading any model
        METRICS.shards_skipped.inc()
        return {"pool": pool, "shard": shard, "skipped": True}
    check_keyed(pool, read_manifest(store, pool))  # a shard queued for a pool made before keying is never written
    claim_seconds = visibility_timeout()
    taken = take_shard(store, pool, shard, parsed, claim_seconds)
    if taken["claim"] is None:  # completed between the two looks
        METRICS.shards_skipped.inc()
        return {"pool": pool, "shard": shard, "skipped": True}
    METRICS.shards_claimed.labels(taken["claim"]).inc()
    if taken["claim"] == "held":
        wait = min(HELD_RETRY_SECONDS, max(1, math.ceil(taken["until"] - time.time())))
        log.info("shard %d of pool %s is held by %s; looking again in %d s", shard, pool, taken["held_by"], wait)
        raise self.retry(countdown=wait, max_retries=STORE_RETRIES + math.ceil(claim_seconds / HELD_RETRY_SECONDS) + 1)
    try:
        dev = device()
        solver = job_substitute(store, named, dev)
        result = compute_shard(store, pool, shard, parsed, attack_solvers(parsed, solver, dev), secret(store), device=dev)
    finally:  # written, or failed: another worker (or this task's retry) may take it at once
        release_shard(store, pool, taken)
    METRICS.record_shard(parsed, result, time.perf_counter() - started)
    return {"pool": pool, "shard": shard, "skipped": False, "count": result["count"],
            "substitute": solver.version, "claim": taken["claim"]}


@shared_task(name=FINETUNE, bind=True)
def finetune(self, answer_batches: list[str], base_version: str | None = None, config: dict | None = None,
             promote: bool = True) -> dict:
    """Fine-tune `base_version` (default: CURRENT) on answer batches and publish; returns the outcome.

    `config`: optional FinetuneConfig fields (steps, lr, tolerance...), JSON like every argument.
    A `base_version` that is not CURRENT is refused before training unless `promote` is false.

    A refusal by the guard or a lost race for CURRENT is an outcome, not a failure: a refusal is
    counted (refused; a model that learned something is kept unpromoted, marked refused), a lost
    race (or `promote` false) is counted kept and returns the unpromoted version and the reason.
    """
    from farm.exceptions import FarmError, FinetuneRefused
    from farm.ops.finetune import finetune as run

    started = time.perf_counter()
    try:
        store = _store()
        keys, settings = parse_finetune(store, answer_batches, base_version, config, promote)
    except (ValueError, FarmError):
        METRICS.finetune_runs.labels("failed").inc()
        raise
    try:
        result = run(store, keys, base=base_version, config=settings, progress=False, promote=promote,
                     command=f"finetune task {self.request.id}", device=device())
    except FinetuneRefused as e:
        METRICS.finetune_runs.labels("refused").inc()
        METRICS.finetune_duration.observe(time.perf_counter() - started)
        log.warning("fine-tune refused: %s", e)
        return {**e.result, "refused": str(e)}
    except (ValueError, FarmError):  # ValueError: CURRENT moved between the arguments' check and the run
        METRICS.finetune_runs.labels("failed").inc()
        raise
    METRICS.finetune_runs.labels("published" if result["promoted"] else "kept").inc()
    METRICS.finetune_duration.observe(time.perf_counter() - started)
    outcome = {k: result[k] for k in ("version", "base", "published", "promoted", "reason", "before", "after",
                                      "queries")}
    if result["promoted"]:  # a kept one is logged by farm.ops.finetune, with the reason
        log.info("fine-tune published %s on top of %s", result["version"], result["base"])
        recipe = _generator_recipe(registry.card(store, result["base"]))
        if recipe is not None:  # the base pools could be made by a generator: so can the new version's
            self.app.send_task(TRAIN_GENERATOR, kwargs={"config": recipe})
            outcome["generator_queued"] = True
    return outcome


def _generator_recipe(card: dict) -> dict | None:
    """The training settings of the generator a card names (farm.ops.generator_training), or None."""
    generator = card.get("generator")
    training = generator.get("training") if isinstance(generator, dict) else None
    recipe = training.get("config") if isinstance(training, dict) else None
    return {k: v for k, v in recipe.items() if k != "cpu_minutes"} if isinstance(recipe, dict) else None


def generator_work() -> Path:
    """Where a worker keeps generator training state (FARM_GENERATOR_WORK, else the temp folder): a redelivered
    task resumes it."""
    return Path(os.environ.get("FARM_GENERATOR_WORK") or Path(tempfile.gettempdir()) / "captchafarm-generator")


@shared_task(name=TRAIN_GENERATOR, bind=True)
def train_generator(self, config: dict | None = None) -> dict:
    """Train a generator against CURRENT and publish it beside CURRENT's weights (farm.ops.generator_training).

    `config`: optional GeneratorTraining fields (steps, captchas, ensemble, seed...), JSON like every argument.
    A run stopped by its cpu_minutes is an outcome (stopped; a later task resumes it), not a failure.
    """
    from farm.exceptions import FarmError
    from farm.ops.generator_training import GeneratorTraining, train_for_store

    started = time.perf_counter()
    try:
        settings = GeneratorTraining.from_dict(config or {}).validate()
        result = train_for_store(_store(), settings, generator_work(), progress=False, device=device())
    except (ValueError, TypeError, FarmError):
        METRICS.generator_runs.labels("failed").inc()
        raise
    METRICS.generator_runs.labels("published" if result["complete"] else "stopped").inc()
    METRICS.generator_duration.observe(time.perf_counter() - started)
    if result["complete"]:
        log.info("generator trained against %s published as %s", result["base"], result["version"])
    return result


class RefillTask(Task):
    """A refill run that failed (for any pool) is counted; the next run, a period later, tries again."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        METRICS.task_failures.labels(self.name).inc()


@shared_task(name=REFILL_POOLS, base=RefillTask)
def refill_pools(floor: int | None = None, pools: list[str] | None = None) -> list[dict]:
    """Grow each active pool (or `pools`, else FARM_REFILL_POOLS) below `floor` (else FARM_REFILL_MIN) unused captchas.

    Sent by the beat process every FARM_REFILL_SECONDS; queues the new shards on `generate` as jobs
    following CURRENT (farm.ops.submit.growth_jobs) and sets the pool gauges. Returns one row per
    pool. It loads no model and publishes nothing: with an empty registry a pool that should grow
    fails, saying which command publishes a substitute.
    """
    from farm.exceptions import JobError
    from farm.ops.refill import refill, refill_floor, refill_pools_setting
    from farm.ops.submit import growth_jobs
    from workers.producer import CeleryRunner

    store = _store()
    rows = refill(store, refill_floor(floor), growth_jobs(store, CeleryRunner()),
                  pools if pools is not None else refill_pools_setting())
    METRICS.record_refill(rows)
    failed = [r for r in rows if r["error"]]
    if failed:  # after the gauges: the pools that worked are reported and grown all the same
        raise JobError(f"refill: {len(failed)} of {len(rows)} pools failed; {failed[0]['pool']}: {failed[0]['error']}")
    return rows
