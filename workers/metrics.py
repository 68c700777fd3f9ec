"""Every Prometheus metric of the farm, defined once against an explicit registry, and its HTTP exporter.

Names are a contract (dashboards, alerts): see the metrics section of the design. Workers run
the solo pool (one process, nothing forks), so a worker's own registry is what it exports. A
worker started with a forking pool and PROMETHEUS_MULTIPROC_DIR set exports the sum over its
processes instead (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["FarmMetrics", "METRICS", "serve", "SHARD_DURATION_BUCKETS", "FINETUNE_DURATION_BUCKETS", "STAGES"]

# A 256-captcha shard takes seconds on a GPU and minutes on a CPU core: the buckets span both,
# and end at 20 minutes so a stuck shard stands apart from a slow one.
SHARD_DURATION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
# A fine-tune replays the original data: minutes on a GPU, hours on a CPU.
FINETUNE_DURATION_BUCKETS = (60, 300, 600, 1800, 3600, 7200, 14400, 28800)
STAGES = ("render", "attack", "encode", "store")  # farm.pool.generate_shard times these


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
            "farm_checkpoint_version", "The substitute version this worker serves: 1 for that version's label.",
            ["version"], registry=r, multiprocess_mode="liveall")
        self.finetune_runs = Counter(
            "farm_finetune_runs_total", "Fine-tune runs by result: published, refused, or failed.",
            ["result"], registry=r)
        self.finetune_duration = Histogram(
            "farm_finetune_duration_seconds", "Wall time of a fine-tune run.",
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

    def record_shard(self, spec, result: dict, seconds: float) -> None:
        """Count what farm.pool.generate_shard returned for one shard."""
        if result["skipped"]:
            self.shards_skipped.inc()
            return
        self.captchas_generated.labels(spec.scheme, spec.method).inc(result["count"])
        self.substitute_solved.labels(spec.scheme, spec.method).inc(result["substitute_solved"])
        for stage in STAGES:
            self.stage_seconds.labels(stage).inc(result["stages"].get(stage, 0.0))
        self.store_bytes_written.inc(result["bytes"])
        self.shard_duration.observe(seconds)

    def record_checkpoint(self, result: str, version: str | None = None) -> None:
        """Count a CURRENT check; `version` when the served model changed."""
        self.checkpoint_loads.labels(result).inc()
        if version is not None:
            self.checkpoint_version.clear()  # one series: the version served now
            self.checkpoint_version.labels(version).set(1)


METRICS = FarmMetrics()  # this worker process's


def serve(port: int, metrics: FarmMetrics = METRICS) -> None:
    """Export on 0.0.0.0:port in a background thread; one port per worker process."""
    registry = metrics.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
