"""Latency of the captcha service's calls as a platform makes them: draw, fetch the image, verify.

Starts `farm serve` (one process, as the Procfile's `web` line does) on a fresh local store holding
a clean pool, against the Redis of FARM_REDIS (default the local one on 6379, database 15, flushed
of the service's keys afterwards), then times `--count` rounds over one keep-alive connection.
Prints p50 / p95 / max milliseconds per call and the rounds per second of one client.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.farm_parts import answers, free_port, stop, wait_for


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="draw + image + verify rounds")
    parser.add_argument("--redis", default=os.environ.get("FARM_REDIS", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="farm-service-bench-"))
    env = {**os.environ, "FARM_STORE": f"file://{folder / 'store'}", "FARM_SECRET": "bench-secret",
           "FARM_REDIS": args.redis, "FARM_TORCH_THREADS": "1"}
    env.pop("FARM_API_KEYS", None)
    count = -(-2 * args.count // 256) * 256  # twice the rounds: a pool nearly all out with someone is a dry pool
    subprocess.run(["farm", "generate", "--pool", "bench", "--count", str(count), "--method", "none", "--no-progress"],
                   env=env, check=True, capture_output=True, timeout=600)
    port = free_port()
    server = subprocess.Popen(["farm", "serve", "--port", str(port), "--log-level", "warning"], env=env,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(port) or server.poll() is not None, 120, "farm serve")  # listens after startup
        if server.poll() is not None:
            raise SystemExit("farm serve exited; see its output above")
        session = requests.Session()
        times = {"draw": [], "image": [], "verify": []}
        for _ in range(args.count):
            started = time.perf_counter()
            shown = session.get(f"{url}/v1/captcha", params={"pool": "bench"}, timeout=10).json()
            times["draw"].append(time.perf_counter() - started)
            started = time.perf_counter()
            session.get(shown["image_url"], timeout=10).raise_for_status()
            times["image"].append(time.perf_counter() - started)
            started = time.perf_counter()
            session.post(f"{url}/v1/verify", json={"id": shown["id"], "answer": "ABCD"}, timeout=10).raise_for_status()
            times["verify"].append(time.perf_counter() - started)
        for name, values in times.items():
            ms = [v * 1000 for v in values]
            print(f"{name:7s} p50 {percentile(ms, 50):6.2f} ms  p95 {percentile(ms, 95):6.2f} ms  max {max(ms):6.1f} ms")
        print(f"rounds_per_second: {args.count / sum(sum(v) for v in times.values()):.0f}")
    finally:
        stop(server)
        import redis
        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter("farm:svc:*"):
            client.delete(key)


if __name__ == "__main__":
    sys.exit(main())
