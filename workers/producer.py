"""The farm's queue as a runner of farm.ops.submit: shards go onto the generate queue and are followed in the store.

`farm generate` with FARM_BROKER set finds CeleryRunner by its entry point (captchafarm.runners,
pyproject.toml); the checks, manifest, job record and summary are farm.ops.submit's, as for a run
in-process. Only shards not yet complete are queued, in order, each message carrying the job's
substitute (version, sha256, pinned or following CURRENT). Progress is read from the store (a
shard is complete when its keys file exists), never from the broker, so following a job,
re-running the same `farm generate` and `farm job status` all agree, whoever runs them and whenever.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from tqdm import tqdm

from farm.core.spec import PoolSpec
from farm.exceptions import JobError
from farm.ops.shard import shard_outcome
from farm.storage import jobs
from farm.storage.config import secret
from farm.storage.jobs import READ_THREADS
from farm.storage.layout import keys_key
from farm.storage.pools import read_shard_keys
from farm.storage.store import Store

__all__ = ["CeleryRunner", "follow"]

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # one LIST of keys/ and one of the job's failures per poll
# publishing retries: a broker restarting is waited for; a broker that is down fails in about 10 s
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 3}


class CeleryRunner:
    """Queues a job's shards for the farm's workers; with `wait`, follows them to the end."""

    remote = True

    def check(self, store: Store) -> None:
        secret(store)  # a shared store without FARM_SECRET is refused here, before anything is queued
        _connect()  # an unreachable broker, too

    def run(self, store: Store, job, progress: bool = True, wait: bool = True) -> list[dict] | None:
        _enqueue(job.record, job.spec, job.todo, job.substitute)
        log.info("job %s: queued %d shards of pool %s (substitute %s, %s)", job.record["id"], len(job.todo), job.pool,
                 job.substitute.version, job.substitute.follows)
        if not wait:
            return None
        follow(store, job.record, progress)
        return _outcomes(store, job)


def _unreachable(e: Exception, what: str) -> JobError:
    return JobError(f"FARM_BROKER: cannot reach {maybe_sanitize_url(os.environ.get('FARM_BROKER', ''))} ({e}); "
                    f"start the broker or fix FARM_BROKER, then run the same `farm generate` again ({what})")


def _connect() -> None:
    from workers.app import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(**PUBLISH_RETRY)
    except OperationalError as e:
        raise _unreachable(e, "nothing was queued") from e


def _enqueue(record: dict, spec: PoolSpec, shards: list[int], substitute: jobs.Substitute) -> None:
    from workers.app import GENERATE_SHARD, app

    sent = 0
    try:
        with app.producer_or_acquire() as producer:  # one connection for every shard
            for shard in shards:
                app.send_task(GENERATE_SHARD, args=[record["pool"], shard, len(spec.indices(shard)), spec.to_dict()],
                              kwargs={"job": record["id"], "substitute": substitute.to_dict()}, producer=producer,
                              retry=True, retry_policy=PUBLISH_RETRY)
                sent += 1
    except OperationalError as e:
        raise _unreachable(e, f"{sent} of {len(shards)} shards of job {record['id']} were queued") from e


def follow(store: Store, record: dict, progress: bool = True) -> None:
    """Wait until every shard is complete (a progress bar on stderr); JobError when a shard gave up."""
    job_id, spec = record["id"], PoolSpec.from_dict(record["spec"])
    status = jobs.progress(store, record)
    bar = tqdm(total=spec.count, initial=status["complete"], desc=f"job {job_id}", unit="captcha",
               disable=not progress, dynamic_ncols=True)
    try:
        while status["state"] == "running":
            time.sleep(POLL_SECONDS)
            status = jobs.progress(store, record)
            bar.update(status["complete"] - bar.n)
    except KeyboardInterrupt:
        raise JobError(f"stopped following; job {job_id} goes on in the farm: `farm job status {job_id}`") from None
    finally:
        bar.close()
    if status["state"] == "failed":
        first = status["failed"][0]
        raise JobError(f"job {job_id}: shard {first['shard']} gave up on {first['worker']}: {first['error']}; "
                       f"the other shards go on; fix the cause and run the same `farm generate` again "
                       f"(complete shards are skipped)")


def _outcomes(store: Store, job) -> list[dict]:
    """The result of each queued shard, read back from its keys file (the workers wrote it)."""
    with ThreadPoolExecutor(READ_THREADS) as threads:
        shards = list(threads.map(lambda s: read_shard_keys(store, keys_key(job.pool, s)), job.todo))
    return [{"shard": shard, "skipped": False, **shard_outcome(records, job.charset)}
            for shard, records in zip(job.todo, shards) if records]
