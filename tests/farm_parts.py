"""Real parts of the farm for tests and benchmarks: ports, a Redis database of one's own, workers from the Procfile.

Every process started here runs in a session of its own, so `stop` ends it with everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90  # a worker imports torch and Celery, then connects


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    """The first truthy value of condition(); TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def procfile() -> dict[str, str]:
    """The Procfile's process lines, parsed the way honcho parses them."""
    from honcho.environ import parse_procfile
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def claim_redis_db(port: int):
    """(number, client) of an empty database of the Redis on `port`, claimed with a key; flushdb() when done."""
    import redis

    for db in range(15, 0, -1):
        client = redis.Redis(port=port, db=db, socket_timeout=5)
        if client.dbsize() == 0 and client.set("captchafarm-claim", uuid.uuid4().hex, nx=True, ex=3600):
            return db, client
    raise RuntimeError(f"redis: no empty database on port {port} (1-15); flush a stale one")


@dataclass
class Worker:
    """A `generate` worker started from the Procfile's line, logging to a file."""

    process: subprocess.Popen
    port: int
    log: Path

    @classmethod
    def start(cls, env: dict, folder: Path, port: int | None = None) -> Worker:
        port = port or free_port()
        log = folder / f"worker-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(procfile()["generate"], shell=True, env={**env, "PORT": str(port)}, cwd=folder,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(process, port, log)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Worker:
        wait_for(lambda: " ready." in self.text() or self.process.poll() is not None, timeout,
                 f"the worker on port {self.port} to start")
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker on port {self.port} exited:\n{self.text()[-3000:]}")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tasks(self, state: str) -> list[str]:
        """Ids of the tasks this worker logged as received / succeeded."""
        marker = " received" if state == "received" else " succeeded in "
        return [line.split("Task generate_shard[", 1)[1].split("]", 1)[0] for line in self.text().splitlines()
                if "Task generate_shard[" in line and marker in line]

    def busy(self) -> bool:
        return len(self.tasks("received")) > len(self.tasks("succeeded"))


@contextmanager
def finetune_worker(env: dict, folder: Path):
    """The Procfile's `finetune` worker, started and ready; yields its log file, and stops it on leaving."""
    log = folder / "finetune.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(procfile()["finetune"], shell=True, env={**env, "PORT": str(free_port())},
                                   cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace") or process.poll() is not None, START_TIMEOUT,
                 "the fine-tune worker")
        assert process.poll() is None, log.read_text()[-3000:]
        yield log
    finally:
        stop(process)
