"""Every Prometheus metric of the captcha service, on an explicit registry (a fresh one per app: tests too).

The service exports them itself at /metrics, beside its API; one service process is one
process (uvicorn without --workers), so its registry is what it exports: run several processes
and Prometheus sums them. Labels are bounded: pools of the store, platforms of FARM_API_KEYS,
fixed results; a request naming an unknown pool or id counts under no pool label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ServiceMetrics", "REQUEST_DURATION_BUCKETS"]

# A draw or a verify is a Redis round trip or two (about a millisecond) plus, for an inline image
# or the image fetch, one store GET (tens of milliseconds on S3): the buckets span both, and end
# at 2.5 s so a stalled store stands apart.
REQUEST_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.served = Counter(
            "farm_service_captchas_served_total", "Captchas the service handed out to platforms, by pool and platform.",
            ["pool", "platform"], registry=r)
        self.verified = Counter(
            "farm_service_verifications_total",
            "Verifies of captchas the service issued, by pool, platform and result (pass or fail).",
            ["pool", "platform", "result"], registry=r)
        self.refused = Counter(
            "farm_service_verify_refused_total",
            "Verifies refused before any answer was checked, by platform and reason: unknown, expired or used.",
            ["platform", "reason"], registry=r)
        self.answers = Counter(
            "farm_service_answers_total",
            "Answer records that platforms reported through the service, by platform and outcome: accepted or "
            "rejected.", ["platform", "outcome"], registry=r)
        self.study_answers = Counter(
            "farm_service_study_answers_total", "Answers that study participants typed, by study and pool.",
            ["study", "pool"], registry=r)
        self.request_duration = Histogram(
            "farm_service_request_duration_seconds", "Time the service took to answer a request, by route.",
            ["route"], buckets=REQUEST_DURATION_BUCKETS, registry=r)
