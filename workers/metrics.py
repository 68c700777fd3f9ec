"""Every Prometheus metric of the farm, defined once against an explicit registry, and its HTTP exporter.

Names are a contract (dashboards, alerts): see the metrics section of the design. Workers run
the solo pool (one process, nothing forks), so a worker's own registry is what it exports. A
worker started with a forking pool and PROMETHEUS_MULTIPROC_DIR set exports the sum over its
processes instead (prometheus_client's multiprocess mode).

Operators' gauges beyond the design: the pools' levels (set by the refill task, so exported by
the one process that runs it: the Procfile's `beat`), the length of each queue (read from the
broker at scrape time by that same process, so that no sum over workers counts it twice), and
the queues each worker consumes (`sum by (queue)` counts the workers).
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["FarmMetrics", "METRICS", "QueueLength", "serve", "SHARD_DURATION_BUCKETS", "FINETUNE_DURATION_BUCKETS",
           "STAGES"]

log = logging.getLogger(__name__)

# A 256-captcha shard takes seconds on a GPU and minutes on a CPU core: the buckets span both,
# and end at 20 minutes so a stuck shard stands apart from a slow one.
SHARD_DURATION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
# A fine-tune replays the original data: minutes on a GPU, hours on a CPU.
FINETUNE_DURATION_BUCKETS = (60, 300, 600, 1800, 3600, 7200, 14400, 28800)
STAGES = ("render", "attack", "encode", "store")  # farm.ops.shard.generate_shard times these


class FarmMetrics:
    """The farm's metrics on one registry: the worker's own, or a fresh one in a test."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.captchas_generated = Counter(
            "farm_captchas_generated_total", "Adversarial captchas written to the store, by scheme and method.",
            ["scheme", "method"], registry=r)
        self.shard_duration = Histogram(
            "farm_shard_duration_seconds", "Wall time of a generated shard, from task start to its keys file.",
            buckets=SHARD_DURATION_BUCKETS, registry=r)
        self.stage_seconds = Counter(
            "farm_stage_seconds_total", "Seconds spent in each stage of generation: render, attack, encode, store.",
            ["stage"], registry=r)
        self.substitute_solved = Counter(
            "farm_substitute_solved_total", "Adversarial captchas that the substitute still reads correctly.",
            ["scheme", "method"], registry=r)
        self.checkpoint_loads = Counter(
            "farm_checkpoint_loads_total", "Checks of checkpoints/CURRENT before a shard: unchanged (the held model "
            "serves), loaded (a new version was loaded), or failed (it could not be used; the held one serves).",
            ["result"], registry=r)
        self.checkpoint_version = Gauge(
            "farm_checkpoint_version", "The substitute version this worker serves and the zoo donors its card aims "
            "every pool at too (comma-separated, or none): 1 for those labels.",
            ["version", "donors"], registry=r, multiprocess_mode="liveall")
        self.finetune_runs = Counter(
            "farm_finetune_runs_total", "Fine-tune runs by result: published (now CURRENT), kept (published "
            "unpromoted: CURRENT moved during the run, or promote was off), refused, or failed.",
            ["result"], registry=r)
        self.finetune_duration = Histogram(
            "farm_finetune_duration_seconds", "Wall time of a fine-tune run.",
            buckets=FINETUNE_DURATION_BUCKETS, registry=r)
        self.generator_runs = Counter(
            "farm_generator_runs_total", "Generator training runs by result: published (beside CURRENT's weights, now "
            "CURRENT), stopped (by its CPU budget: run again to resume), or failed.", ["result"], registry=r)
        self.generator_duration = Histogram(
            "farm_generator_duration_seconds", "Wall time of a generator training run.",
            buckets=FINETUNE_DURATION_BUCKETS, registry=r)
        self.store_bytes_written = Counter(
            "farm_store_bytes_written_total", "Bytes of images and keys files written to the object store.",
            registry=r)
        self.task_failures = Counter(
            "farm_task_failures_total", "Tasks that gave up with an error (after their retries), by task name.",
            ["task"], registry=r)
        self.shards_skipped = Counter(
            "farm_shards_skipped_total", "Shards found complete and skipped (redelivered or submitted again).",
            registry=r)
        self.shards_claimed = Counter(
            "farm_shards_claimed_total", "Claims of shards before computing them, by result: claimed (a new claim; "
            "computed here), taken_over (the holder's claim expired or its process ended; computed here), or held "
            "(another worker holds it; tried again later). claimed plus taken_over counts shard computations.",
            ["result"], registry=r)
        self.worker_consuming = Gauge(
            "farm_worker_consuming",
            "Set to 1 for each queue this worker consumes; summed by queue, it counts the queue's workers.",
            ["queue"], registry=r, multiprocess_mode="livemax")
        # pool levels: set by the refill task at each run (farm.ops.refill), for the pools it looks after
        self.pool_complete = Gauge(
            "farm_pool_complete_captchas",
            "Captchas of a pool in complete shards, as the last refill run counted them.",
            ["pool"], registry=r, multiprocess_mode="mostrecent")
        self.pool_unused = Gauge(
            "farm_pool_unused_captchas", "Complete captchas of a pool that platforms have not marked served yet.",
            ["pool"], registry=r, multiprocess_mode="mostrecent")
        self.pool_floor = Gauge(
            "farm_pool_floor_captchas", "Unused captchas the refill keeps in a pool (FARM_REFILL_MIN).",
            ["pool"], registry=r, multiprocess_mode="mostrecent")
        self.pool_refill = Counter(
            "farm_pool_refill_captchas_total", "Captchas the refill added to a pool (queued for generation).",
            ["pool"], registry=r)
        self.queue_length = QueueLength()
        r.register(self.queue_length)

    def record_shard(self, spec, result: dict, seconds: float) -> None:
        """Count what farm.ops.shard.generate_shard returned for one shard."""
        if result["skipped"]:
            self.shards_skipped.inc()
            return
        self.captchas_generated.labels(spec.scheme, spec.method).inc(result["count"])
        self.substitute_solved.labels(spec.scheme, spec.method).inc(result["substitute_solved"])
        for stage in STAGES:
            self.stage_seconds.labels(stage).inc(result["stages"].get(stage, 0.0))
        self.store_bytes_written.inc(result["bytes"])
        self.shard_duration.observe(seconds)

    def record_checkpoint(self, result: str, version: str | None = None,
                          donors: tuple[str, ...] | list[str] = ()) -> None:
        """Count a CURRENT check; `version` (and its card's donors) when the served model changed."""
        self.checkpoint_loads.labels(result).inc()
        if version is not None:
            self.checkpoint_version.clear()  # one series: the version served now
            self.checkpoint_version.labels(version, ",".join(donors) or "none").set(1)

    def record_refill(self, results: list[dict]) -> None:
        """Pool levels and growth from one refill run (farm.ops.refill.refill's rows)."""
        for row in results:
            if row.get("complete") is None:  # the pool could not be read: its last level stands
                continue
            pool = row["pool"]
            self.pool_complete.labels(pool).set(row["complete"])
            self.pool_unused.labels(pool).set(row["unused"])
            if row.get("floor") is not None:
                self.pool_floor.labels(pool).set(row["floor"])
            if row.get("added"):
                self.pool_refill.labels(pool).inc(row["added"])


class QueueLength(Collector):
    """`farm_queue_length{queue}`: messages waiting in each queue, read from the broker at every scrape.

    Only the process that `watch`es exports samples (the Procfile's `beat`: one per farm); in
    every other one the family is empty. Waiting means not yet taken: a shard a worker holds is
    not counted. On Redis the count is kombu's, which adds up the queue's priority lists too.
    A broker that does not answer leaves the family empty for that scrape (and logs why): no
    sample rather than a 0 that would hide it.
    """

    NAME = "farm_queue_length"
    HELP = "Messages waiting in a queue of the broker, not yet taken by a worker."

    def __init__(self):
        self.app, self.queues = None, ()

    def watch(self, app, queues) -> None:
        self.app, self.queues = app, tuple(queues)

    def describe(self):
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])]

    def collect(self):
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])
        if self.app is not None:
            try:
                with self.app.connection_for_read() as connection:
                    connection.ensure_connection(max_retries=1)
                    for name in self.queues:
                        with connection.channel() as channel:  # AMQP closes a channel whose queue is missing
                            try:
                                family.add_metric([name], channel.queue_declare(queue=name, passive=True).message_count)
                            except connection.channel_errors as e:
                                # Redis drops an empty list, so an empty queue is "not found" there; on
                                # AMQP it is a queue nothing declared yet: nothing waits in either
                                if "NOT_FOUND" not in str(e):
                                    raise
                                family.add_metric([name], 0)
            except Exception as e:  # noqa: BLE001 (a scrape never fails because the broker is away)
                log.warning("queue lengths: cannot read them from the broker (%s)", e)
        yield family


METRICS = FarmMetrics()  # this worker process's


def serve(port: int, metrics: FarmMetrics = METRICS) -> None:
    """Export on 0.0.0.0:port in a background thread; one port per worker process."""
    registry = metrics.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
