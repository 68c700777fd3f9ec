"""The farm's Celery app: broker from FARM_BROKER, JSON only, late acks, the generate and finetune queues.

Start a worker per GPU with the solo pool (see the Procfile):
    celery -A workers.app worker --pool=solo -Q generate
and one `beat` process for the farm: a solo worker on the `refill` queue that embeds Celery beat,
which sends it `refill_pools` every FARM_REFILL_SECONDS (farm.ops.refill keeps each pool platforms
draw from above FARM_REFILL_MIN unused captchas). Refill has a queue of its own so that it never
waits behind hundreds of shards, and one process so that the pool gauges come from one place.
The solo pool runs tasks in the worker's own process: nothing forks, so CUDA is only ever
initialised in the process that uses it, a worker holds one model on one GPU, and the
metrics it exports are its own. A shard is one long batched computation, so a worker needs no
concurrency of its own; more throughput means more workers (processes, GPUs, machines).
"""

from __future__ import annotations

import logging
import os

from celery import Celery, signals
from kombu import Exchange, Queue
from kombu.utils.url import maybe_sanitize_url

__all__ = ["create_app", "broker_url", "visibility_timeout", "refill_seconds", "GENERATE_SHARD", "FINETUNE",
           "TRAIN_GENERATOR", "REFILL_POOLS", "QUEUES"]

log = logging.getLogger(__name__)

GENERATE_SHARD = "generate_shard"  # task names are a contract (design: queues and tasks), not module paths
FINETUNE = "finetune"
TRAIN_GENERATOR = "train_generator"  # on the finetune queue: it trains against a published version and publishes
REFILL_POOLS = "refill_pools"
QUEUES = ("generate", "finetune", "refill")
# Redis hands an unacknowledged task to another worker after this many seconds. It must exceed
# the longest task (a 256-captcha shard takes minutes on a CPU) or a live worker's shard runs
# twice (harmlessly: shards are idempotent, but the work is wasted). A killed worker's shard
# comes back after at most this plus the restore interval.
DEFAULT_VISIBILITY_TIMEOUT = 3600
MAX_RESTORE_INTERVAL = 10  # seconds between a worker's sweeps for abandoned tasks (kombu's default)
# A pool drains at the platforms' pace; a few minutes between refills is well within what a floor
# of a few thousand captchas lasts, and each run costs a few listings per pool.
DEFAULT_REFILL_SECONDS = 300


def broker_url() -> str:
    url = os.environ.get("FARM_BROKER", "")
    if not url:
        raise ValueError("FARM_BROKER: not set; point it at the broker, e.g. redis://127.0.0.1:6379/0 or "
                         "amqp://user:password@127.0.0.1:5672//")
    if not url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ValueError(f"FARM_BROKER: {maybe_sanitize_url(url)!r} is neither redis:// nor amqp://")
    return url


def visibility_timeout() -> int:
    value = os.environ.get("FARM_VISIBILITY_TIMEOUT", str(DEFAULT_VISIBILITY_TIMEOUT))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FARM_VISIBILITY_TIMEOUT: {value!r} is not a positive number of seconds")
    return int(value)


def refill_seconds() -> int:
    value = os.environ.get("FARM_REFILL_SECONDS", str(DEFAULT_REFILL_SECONDS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FARM_REFILL_SECONDS: {value!r} is not a positive number of seconds")
    return int(value)


def create_app(broker: str | None = None) -> Celery:
    broker = broker or broker_url()
    app = Celery("farm", broker=broker, include=["workers.tasks"])
    transport = {}
    if broker.startswith(("redis://", "rediss://")):
        timeout = visibility_timeout()
        # sweep often enough that a short timeout (tests, small shards) is honoured; throttle 1
        # makes the interval alone decide (kombu otherwise scans every 10th sweep only)
        transport = {"visibility_timeout": timeout, "unacked_restore_throttle": 1,
                     "unacked_restore_interval": max(1, min(MAX_RESTORE_INTERVAL, timeout // 4))}
    app.conf.update(
        accept_content=["json"], task_serializer="json", result_serializer="json",
        task_acks_late=True,  # acknowledge after the shard is written: a lost worker's shard is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds only the shard it works on; the others stay queued
        task_ignore_result=True,  # progress is read from the store (keys files), not from a result backend
        # a routing key of its own per queue: Celery would otherwise bind both to "celery" and a
        # generate task would also land on the finetune queue
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_routes={GENERATE_SHARD: {"queue": "generate"}, FINETUNE: {"queue": "finetune"},
                     TRAIN_GENERATOR: {"queue": "finetune"}, REFILL_POOLS: {"queue": "refill"}},
        # read by the beat process only; a refill not started within its period is dropped, not piled up
        beat_schedule={"refill-pools": {"task": REFILL_POOLS, "schedule": refill_seconds(),
                                        "options": {"queue": "refill", "expires": refill_seconds()}}},
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
    )
    return app


def __getattr__(name: str):
    """`app` is built on first use: importing this module (tests, tooling) needs no FARM_BROKER."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@signals.worker_init.connect
def _start_worker(sender=None, **_) -> None:
    """Torch threads and the metrics exporter, once per worker, before the first task."""
    _torch_threads()
    from workers.metrics import METRICS
    consumed = sorted(sender.app.amqp.queues.consume_from) if sender is not None else []
    for name in consumed:
        METRICS.worker_consuming.labels(name).set(1)
    if "refill" in consumed:  # the farm's one beat process also reports the queues' lengths
        METRICS.queue_length.watch(sender.app, QUEUES)
    port = os.environ.get("FARM_METRICS_PORT")
    if not port:
        log.warning("FARM_METRICS_PORT is not set: this worker exports no metrics")
        return
    if not port.isdigit():
        raise SystemExit(f"FARM_METRICS_PORT: {port!r} is not a port number")
    from workers.metrics import serve
    try:
        serve(int(port))
    except OSError as e:
        raise SystemExit(f"FARM_METRICS_PORT: cannot listen on {port} ({e}); give every worker a port of its "
                         f"own (the Procfile uses honcho's $PORT)") from e
    log.info("metrics on :%s/metrics", port)


@signals.worker_process_init.connect
def _start_child(**_) -> None:
    _torch_threads()  # forking pools only; the solo pool has no child


@signals.worker_process_shutdown.connect
def _stop_child(pid=None, **_) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid or os.getpid())


def _torch_threads() -> None:
    """FARM_TORCH_THREADS: with several workers on one machine's cores, 1 each avoids oversubscription."""
    value = os.environ.get("FARM_TORCH_THREADS")
    if not value:
        return
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"FARM_TORCH_THREADS: {value!r} is not a positive number of threads")
    import torch
    torch.set_num_threads(int(value))
