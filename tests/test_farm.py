"""The distributed farm, with real parts: a Redis (or RabbitMQ) broker, moto's S3 server, Celery workers
started from the Procfile's own command lines, and a Prometheus server scraping them.

Every process a test starts is killed by its fixture; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from farm.storage import jobs, registry
from farm.core.spec import PoolSpec
from farm.ops.shard import generate_shard
from farm.storage.pools import read_keys
from farm.storage.manifest import read_manifest, write_manifest
from farm.storage.store import LocalStore, Store, open_store
from tests.farm_parts import Worker, answers, claim_redis_db, free_port, procfile, stop, wait_for

SECRET = "test-secret-not-for-production"
POOL, COUNT, SHARD = "p", 400, 50  # 8 shards
ARGS = ["--pool", POOL, "--count", str(COUNT), "--shard-size", str(SHARD), "--steps", "2", "--no-progress"]
JOB_TIMEOUT = 480  # seconds a 400-captcha job may take on 2 busy cores before the test fails


# --- helpers -------------------------------------------------------------------------------------------

def farm_store_env(broker: str, bucket: str, **extra) -> dict:
    """The environment of a farm process: S3 on moto (AWS_* set by the s3_env fixture), one torch thread."""
    return {**os.environ, "FARM_BROKER": broker, "FARM_STORE": f"s3://{bucket}/farm", "FARM_SECRET": SECRET,
            "FARM_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def run_farm(env: dict, *args: str, cwd: Path, timeout: float = JOB_TIMEOUT) -> subprocess.CompletedProcess:
    result = subprocess.run(["farm", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"farm {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result


def assert_same_pool(farm: Store, embedded: Store, pool: str = POOL) -> None:
    """Images and keys byte for byte; the manifest apart from its time and the farm's per-shard substitute."""
    listed = [k for k in embedded.list(f"pools/{pool}/") if not k.endswith("/manifest.json")]
    assert [k for k in farm.list(f"pools/{pool}/") if not k.endswith("/manifest.json")] == listed
    assert len([k for k in listed if "/images/" in k]) == COUNT
    for key in listed:
        assert farm.get(key) == embedded.get(key), key

    def comparable(manifest: dict) -> dict:
        shards = [{k: v for k, v in s.items() if k != "substitute"} for s in manifest["shards"]]
        return {**{k: v for k, v in manifest.items() if k != "updated"}, "shards": shards}
    assert comparable(read_manifest(farm, pool)) == comparable(read_manifest(embedded, pool))


def assert_complete_without_duplicates(store: Store, pool: str = POOL) -> list[dict]:
    records = read_keys(store, pool)
    assert sorted(r["index"] for r in records) == list(range(COUNT)), "a captcha is missing or doubled"
    ids = [r["id"] for r in records]
    assert len(set(ids)) == COUNT
    images = store.list(f"pools/{pool}/images/")
    assert sorted(images) == sorted(f"pools/{pool}/images/{i}.png" for i in ids)
    manifest = read_manifest(store, pool)
    assert manifest["status"] == "complete" and manifest["complete"] == COUNT and len(manifest["shards"]) == 8
    return records


# --- fast: configuration, metrics, job records ----------------------------------------------------------

def test_the_farm_package_never_imports_celery():
    code = "import sys, farm.cli, farm.storage.jobs; sys.exit('celery' in sys.modules or 'workers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_app_takes_json_only_acks_late_and_routes_each_task_to_its_queue(monkeypatch):
    from workers.app import create_app
    monkeypatch.setenv("FARM_VISIBILITY_TIMEOUT", "7200")
    conf = create_app("redis://127.0.0.1:6379/0").conf
    assert conf.accept_content == ["json"] and conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.task_routes == {"generate_shard": {"queue": "generate"}, "finetune": {"queue": "finetune"},
                                "train_generator": {"queue": "finetune"}, "refill_pools": {"queue": "refill"}}
    keys = {q.name: q.routing_key for q in conf.task_queues}
    assert keys == {"generate": "generate", "finetune": "finetune", "refill": "refill"}  # a task lands on one queue only
    assert "visibility_timeout" not in create_app("amqp://guest:guest@127.0.0.1:5672//").conf.broker_transport_options


@pytest.mark.parametrize("name,value,message", [
    ("FARM_BROKER", "", "FARM_BROKER: not set"),
    ("FARM_BROKER", "http://user:hunter2@host/", "neither redis:// nor amqp://"),
    ("FARM_VISIBILITY_TIMEOUT", "soon", "FARM_VISIBILITY_TIMEOUT"),
])
def test_bad_farm_settings_name_the_variable_and_hide_passwords(monkeypatch, name, value, message):
    from workers.app import create_app
    monkeypatch.setenv("FARM_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message) as e:
        create_app()
    assert "hunter2" not in str(e.value)


def test_the_procfile_runs_one_solo_worker_process_per_queue():
    lines = procfile()
    assert set(lines) >= {"generate", "finetune"}
    for name in ("generate", "finetune"):
        assert "--pool=solo" in lines[name] and f"--queues={name}" in lines[name]
        assert "FARM_METRICS_PORT=$PORT" in lines[name]  # honcho gives each process its own port


def test_every_metric_of_the_design_is_defined_with_a_sentence_of_help():
    from prometheus_client import CollectorRegistry

    from workers.metrics import FarmMetrics
    metrics = FarmMetrics(CollectorRegistry())
    helps = {m.name: m.documentation for m in metrics.registry.collect()}
    design = {"farm_captchas_generated": "counter", "farm_shard_duration_seconds": "histogram",
              "farm_stage_seconds": "counter", "farm_substitute_solved": "counter",
              "farm_checkpoint_loads": "counter", "farm_checkpoint_version": "gauge",
              "farm_finetune_runs": "counter", "farm_finetune_duration_seconds": "histogram",
              "farm_store_bytes_written": "counter", "farm_task_failures": "counter"}
    types = {m.name: m.type for m in metrics.registry.collect()}
    for name, kind in design.items():
        assert types.get(name) == kind, name
        assert helps[name][0].isupper() and helps[name].endswith("."), helps[name]


def test_a_shard_is_counted_by_scheme_method_and_stage():
    from prometheus_client import CollectorRegistry

    from workers.metrics import FarmMetrics
    metrics = FarmMetrics(CollectorRegistry())
    spec = PoolSpec(count=8, scheme="wave", method="direct")
    result = {"skipped": False, "count": 8, "substitute_solved": 3, "bytes": 1000,
              "stages": {"render": 1.0, "attack": 2.0, "encode": 0.5, "store": 0.25}}
    metrics.record_shard(spec, result, 4.0)
    metrics.record_shard(spec, {"skipped": True, "count": 8}, 0.1)
    metrics.record_checkpoint("loaded", "v2")
    metrics.record_checkpoint("loaded", "v3", ["resnet-a"])  # a fine-tune's version: its card names a donor
    value = metrics.registry.get_sample_value
    assert value("farm_captchas_generated_total", {"scheme": "wave", "method": "direct"}) == 8
    assert value("farm_substitute_solved_total", {"scheme": "wave", "method": "direct"}) == 3
    assert value("farm_stage_seconds_total", {"stage": "attack"}) == 2.0
    assert value("farm_store_bytes_written_total") == 1000 and value("farm_shards_skipped_total") == 1
    assert value("farm_shard_duration_seconds_count") == 1
    assert value("farm_checkpoint_version", {"version": "v3", "donors": "resnet-a"}) == 1
    assert value("farm_checkpoint_version", {"version": "v2", "donors": "none"}) is None  # one series: served now


@pytest.mark.parametrize("args,message", [
    (("../x", 0, 8, {"count": 8}), "pool"),
    (("p", 2, 8, {"count": 16, "shard_size": 8}), "shard"),
    (("p", 1, 5, {"count": 16, "shard_size": 8}), "count"),
    (("p", 0, 8, {"count": 8, "method": "fgsm"}), "method"),
    (("p", 0, 8, "count=8"), "spec"),
])
def test_task_arguments_are_checked_before_any_work(args, message):
    from workers.tasks import parse_shard
    with pytest.raises(ValueError, match=message):
        parse_shard(*args)


def test_no_wait_without_a_broker_is_a_clear_error(tmp_path):
    env = {**os.environ, "FARM_STORE": f"file://{tmp_path / 'store'}"}
    env.pop("FARM_BROKER", None)
    result = subprocess.run(["farm", "generate", "--pool", "p", "--count", "4", "--no-wait"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "FARM_BROKER" in result.stderr
    assert not (tmp_path / "store").exists()


def test_an_unreachable_broker_is_a_clear_error_and_queues_nothing(tmp_path):
    env = {**os.environ, "FARM_STORE": f"file://{tmp_path / 'store'}",
           "FARM_BROKER": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    result = subprocess.run(["farm", "generate", "--pool", "p", "--count", "4"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "cannot reach" in result.stderr and "nothing was queued" in result.stderr
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "store/pools").exists()


def test_job_status_reads_progress_from_the_store_and_completes_the_manifest(store, substitute, monkeypatch):
    from farm.cli import main
    spec = PoolSpec(count=12, shard_size=8, steps=1)
    write_manifest(store, "s", spec, substitute, status="generating")
    record = jobs.create(store, "s", spec, jobs.Substitute(substitute.version, substitute.sha256), [0, 1])
    generate_shard(store, "s", 0, spec, [substitute], SECRET.encode())
    monkeypatch.setenv("FARM_STORE", store.url)

    def status() -> dict:
        result = CliRunner().invoke(main, ["job", "status", record["id"], "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)
    assert status() | {"created": None, "failed": None} == {
        "job": record["id"], "pool": "s", "state": "running", "count": 12, "complete": 8, "shards": 2,
        "shards_complete": 1, "failed": None, "created": None}
    jobs.record_failure(store, record["id"], 1, "CheckpointError: zoo: crnn-b is not trained here", "w1@host")
    assert status()["state"] == "failed"
    generate_shard(store, "s", 1, spec, [substitute], SECRET.encode())
    assert status()["state"] == "complete" and status()["failed"] == []
    manifest = read_manifest(store, "s")
    assert manifest["status"] == "complete" and manifest["complete"] == 12
    assert [s["substitute"]["version"] for s in manifest["shards"]] == [substitute.version] * 2
    unknown = CliRunner().invoke(main, ["job", "status", "0123456789ab"])
    assert unknown.exit_code != 0 and "not in" in unknown.output


def test_the_farms_runner_is_found_by_entry_point_and_a_missing_one_is_a_clear_error():
    from farm.exceptions import JobError
    from farm.ops.submit import RUNNERS, farm_runner
    from workers.producer import CeleryRunner
    assert isinstance(farm_runner(), CeleryRunner)  # pyproject's [project.entry-points."captchafarm.runners"]
    with pytest.raises(JobError, match=f"no runner 'abacus' is registered under the entry point group {RUNNERS}"):
        farm_runner("abacus")


def test_a_worker_with_an_empty_registry_fails_the_shard_naming_the_command_and_publishes_nothing(
        store, substitute, monkeypatch):
    from workers import tasks
    spec = PoolSpec(count=8, shard_size=4, steps=1)
    write_manifest(store, "p", spec, substitute, status="generating")
    record = jobs.create(store, "p", spec, jobs.Substitute(substitute.version, substitute.sha256), [0, 1])
    monkeypatch.setattr(tasks, "_held", tasks._Held())  # a worker process that has served nothing yet
    monkeypatch.setattr(tasks._held, "store", store)
    for substitute_field in (None, record["substitute"]):  # a message from before pinning; one following CURRENT
        outcome = tasks.generate_shard.apply(args=["p", 0, 4, spec.to_dict()],
                                             kwargs={"job": record["id"], "substitute": substitute_field})
        assert outcome.failed() and "registry" in str(outcome.result) and "`farm generate`" in str(outcome.result)
    (failure,) = jobs.progress(store, record)["failed"]  # the producer stops waiting and tells the operator
    assert failure["shard"] == 0 and "is empty" in failure["error"] and "`farm generate`" in failure["error"]
    assert store.list("checkpoints/") == [] and store.list("pools/p/keys/") == []
    assert registry.current(store) is None


def queued_shards(broker: str) -> int:
    import redis
    return redis.Redis.from_url(broker).llen("generate")


def test_a_pool_the_current_substitute_cannot_read_is_refused_before_anything_is_queued(redis_broker, bucket, tmp_path):
    from farm.core.charset import Charset
    from tests.test_registry import checkpoint
    env = farm_store_env(redis_broker, bucket)
    store = open_store(env["FARM_STORE"])
    registry.publish(store, *checkpoint(1, Charset("0123456789")))  # CURRENT reads digits; classic has letters too
    result = subprocess.run(["farm", "generate", *ARGS], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "cannot read" in result.stderr and "substitute v1" in result.stderr
    assert queued_shards(redis_broker) == 0 and store.list("pools/") == [] and store.list("jobs/") == []


def test_an_unpublished_checkpoint_is_refused_on_the_farm_before_anything_is_queued(redis_broker, bucket, tmp_path):
    from tests.test_registry import checkpoint
    env = farm_store_env(redis_broker, bucket)
    folder = tmp_path / "mine"
    folder.mkdir()
    weights, card = checkpoint(2)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "card.json").write_text(json.dumps(card))
    result = subprocess.run(["farm", "generate", *ARGS, "--checkpoint", str(folder)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not in the registry" in result.stderr
    assert f"farm checkpoint publish {folder}" in result.stderr
    store = open_store(env["FARM_STORE"])
    assert queued_shards(redis_broker) == 0 and store.list("pools/") == [] and store.list("jobs/") == []


# --- slow: the farm with real parts ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    """The local Redis on 6379 when it answers, otherwise a redis-server started for the session."""
    if answers(6379):
        yield 6379
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server: not installed and nothing answers on 127.0.0.1:6379; install Debian's "
                    "redis-server (scripts/setup --test does)")
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(folder)], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: answers(port), 20, "redis-server to listen")
        yield port
    finally:
        stop(process)


@pytest.fixture
def redis_broker(redis_port):
    """redis://127.0.0.1:<port>/<db> with a database no one else uses (claimed, then flushed after the test)."""
    db, client = claim_redis_db(redis_port)
    try:
        yield f"redis://127.0.0.1:{redis_port}/{db}"
    finally:
        client.flushdb()


@pytest.fixture
def rabbitmq_broker():
    """amqp://guest:guest@127.0.0.1:5672/<vhost of this test>; skipped locally when RabbitMQ does not answer.

    CI (scripts/setup --test starts RabbitMQ) fails instead: a skip there would hide missing set-up.
    """
    if not answers(5672):
        message = "RabbitMQ does not answer on 127.0.0.1:5672 (scripts/setup --test starts it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    ctl, vhost = shutil.which("rabbitmqctl"), f"farm-test-{uuid.uuid4().hex[:8]}"

    def rabbitmqctl(*args: str) -> bool:
        try:
            return subprocess.run([ctl, *args], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
    if ctl and rabbitmqctl("add_vhost", vhost) and rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        try:
            yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        finally:
            rabbitmqctl("delete_vhost", vhost)
    else:  # no rights to make a vhost: the default one (a test machine's broker is its own)
        yield "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def start_workers(tmp_path):
    """start_workers(env, n) -> n `generate` workers from the Procfile's line, each on its own port."""
    started: list[Worker] = []

    def start(env: dict, n: int = 2, ports: list[int] | None = None) -> list[Worker]:
        new = [Worker.start(env, tmp_path, ports[k] if ports else None) for k in range(n)]
        started.extend(new)
        return [worker.wait_ready() for worker in new]

    yield start
    for worker in started:
        stop(worker.process)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> LocalStore:
    """The same pool generated embedded (no broker) by `farm generate` with the same arguments."""
    folder = tmp_path_factory.mktemp("embedded")
    env = {**os.environ, "FARM_STORE": f"file://{folder / 'store'}", "FARM_SECRET": SECRET, "FARM_TORCH_THREADS": "1"}
    env.pop("FARM_BROKER", None)
    run_farm(env, "generate", *ARGS, cwd=folder)
    return LocalStore(folder / "store")


@pytest.mark.slow
def test_a_job_of_8_shards_completes_byte_identical_to_the_embedded_run(redis_broker, bucket, start_workers,
                                                                      embedded, tmp_path):
    env = farm_store_env(redis_broker, bucket)
    workers = start_workers(env)
    summary = json.loads(run_farm(env, "generate", *ARGS, "--json", cwd=tmp_path).stdout)
    assert summary["count"] == summary["generated"] == COUNT and summary["substitutes"] == {"v1": COUNT}
    assert_same_pool(open_store(env["FARM_STORE"]), embedded)
    assert all(w.tasks("succeeded") for w in workers), "both workers should have taken shards"


@pytest.mark.slow
def test_the_same_job_over_rabbitmq_is_byte_identical(rabbitmq_broker, bucket, start_workers, embedded, tmp_path):
    env = farm_store_env(rabbitmq_broker, bucket)
    start_workers(env)
    summary = json.loads(run_farm(env, "generate", *ARGS, "--json", cwd=tmp_path).stdout)
    assert summary["count"] == COUNT
    assert_same_pool(open_store(env["FARM_STORE"]), embedded)


@pytest.mark.slow
def test_killed_worker_loses_no_captcha(redis_broker, bucket, start_workers, tmp_path):
    # a short visibility timeout: Redis hands the killed worker's shard to the other one within ~25 s
    env = farm_store_env(redis_broker, bucket, FARM_VISIBILITY_TIMEOUT="20")
    victim, survivor = start_workers(env)
    producer = subprocess.Popen(["farm", "generate", *ARGS, "--json"], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: victim.tasks("succeeded") and victim.busy(), JOB_TIMEOUT, "the victim to start its 2nd shard",
                 interval=0.02)
        os.killpg(victim.process.pid, signal.SIGKILL)
        out, err = producer.communicate(timeout=JOB_TIMEOUT)
    finally:
        stop(producer)
    assert producer.returncode == 0, err[-3000:]
    lost = set(victim.tasks("received")) - set(victim.tasks("succeeded"))
    assert len(lost) == 1, "the victim was not killed in the middle of a shard"
    assert lost <= set(survivor.tasks("succeeded")), "the killed worker's shard was not redelivered"
    assert json.loads(out)["count"] == COUNT
    assert_complete_without_duplicates(open_store(env["FARM_STORE"]))


@pytest.fixture
def prometheus(tmp_path):
    """prometheus(targets) -> base URL of a Prometheus scraping host:port targets every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus: not installed; install Debian's package (`apt-get install prometheus`; "
                    "scripts/setup --test does it)")
    processes = []

    def start(targets: list[str]) -> str:
        port, folder = free_port(), tmp_path / "prometheus"
        folder.mkdir()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": [{"job_name": "farm", "static_configs": [{"targets": targets}]}]}
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        with open(folder / "log", "wb") as log:
            processes.append(subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
            except OSError:
                return False
        wait_for(ready, 60, "Prometheus to be ready")
        return url

    yield start
    for process in processes:
        stop(process)


def query(url: str, promql: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as response:
        return json.load(response)["data"]["result"]


@pytest.mark.slow
def test_prometheus_scrapes_both_workers_and_counts_every_captcha(redis_broker, bucket, start_workers, prometheus,
                                                                 tmp_path):
    env = farm_store_env(redis_broker, bucket)
    ports = [free_port(), free_port()]
    url = prometheus([f"127.0.0.1:{p}" for p in ports])
    start_workers(env, ports=ports)
    wait_for(lambda: len(query(url, 'up{job="farm"} == 1')) == 2, 30, "Prometheus to scrape both workers")
    job = json.loads(run_farm(env, "generate", *ARGS, "--no-wait", "--json", cwd=tmp_path).stdout)["job"]

    def state() -> str:
        return json.loads(run_farm(env, "job", "status", job, "--json", cwd=tmp_path).stdout)["state"]
    wait_for(lambda: state() == "complete", JOB_TIMEOUT, f"job {job} to complete", interval=1)
    assert read_manifest(open_store(env["FARM_STORE"]), POOL)["status"] == "complete"  # written by `job status`

    def total() -> float:
        result = query(url, "sum(farm_captchas_generated_total)")
        return float(result[0]["value"][1]) if result else 0.0
    wait_for(lambda: total() == COUNT, 30, f"Prometheus to report {COUNT} captchas (last: {total()})", interval=0.5)
    per_worker = query(url, "sum by (instance) (farm_captchas_generated_total)")
    assert len(per_worker) == 2 and all(float(r["value"][1]) > 0 for r in per_worker)
    stages = {r["metric"]["stage"] for r in query(url, "farm_stage_seconds_total > 0")}
    assert stages == {"render", "attack", "encode", "store"}


def perturbed_bundled() -> tuple[bytes, dict]:
    """The bundled substitute re-saved after a tiny perturbation: another sha256, the same readings (nearly)."""
    from safetensors.torch import load, save
    weights, card = registry.bundled()
    tensors = load(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-4
    return save(tensors), {k: v for k, v in card.items() if k != "sha256"}  # publish computes the new one


@pytest.mark.slow
def test_a_checkpoint_promoted_mid_job_is_used_by_the_shards_that_start_after_it(redis_broker, bucket, start_workers,
                                                                                tmp_path):
    env = farm_store_env(redis_broker, bucket)
    store = open_store(env["FARM_STORE"])
    registry.ensure_current(store)
    weights, card = perturbed_bundled()
    assert registry.publish(store, weights, card, make_current=False) == "v2"
    start_workers(env)
    producer = subprocess.Popen(["farm", "generate", *ARGS, "--json"], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: store.list(f"pools/{POOL}/keys/"), JOB_TIMEOUT, "the first shard", interval=0.05)
        registry.promote(store, "v2")
        done_before = len(store.list(f"pools/{POOL}/keys/"))
        out, err = producer.communicate(timeout=JOB_TIMEOUT)
    finally:
        stop(producer)
    assert producer.returncode == 0, err[-3000:]
    records = assert_complete_without_duplicates(store)
    per_shard = {}
    for r in records:
        per_shard.setdefault(r["shard"], set()).add(r["substitute"])
    assert all(len(v) == 1 for v in per_shard.values()), "a shard mixed two substitutes"
    versions = [per_shard[s].pop() for s in range(8)]
    # the queue hands shards out in order: the ones before the switch (done or in flight on 2 workers) keep v1
    assert versions == sorted(versions), versions
    assert 1 <= versions.count("v1") <= done_before + 2 and "v2" in versions, (versions, done_before)
    assert [s["substitute"]["version"] for s in read_manifest(store, POOL)["shards"]] == versions
    assert json.loads(out)["substitutes"] == {v: SHARD * versions.count(v) for v in set(versions)}


@pytest.mark.slow
def test_a_pinned_job_is_made_with_its_version_even_after_current_moves(redis_broker, bucket, start_workers, tmp_path):
    env = farm_store_env(redis_broker, bucket)
    store = open_store(env["FARM_STORE"])
    v1 = registry.ensure_current(store)
    weights, card = perturbed_bundled()
    assert registry.publish(store, weights, card, make_current=False) == "v2"
    small = ["--count", "16", "--shard-size", "8", "--steps", "1", "--no-progress", "--json"]
    queued = json.loads(run_farm(env, "generate", "--pool", "pinned", *small, "--version", "v1", "--no-wait",
                                 cwd=tmp_path).stdout)
    record = jobs.load(store, queued["job"])
    assert record["substitute"] == {**v1, "follows": "pinned"}
    registry.promote(store, "v2")  # CURRENT moves before any worker took a shard of the job
    start_workers(env, n=1)
    wait_for(lambda: jobs.progress(store, record)["state"] != "running", JOB_TIMEOUT, "the pinned job")
    assert jobs.progress(store, record)["state"] == "complete"
    assert {r["substitute"] for r in read_keys(store, "pinned")} == {"v1"}
    assert {r["substitute_sha256"] for r in read_keys(store, "pinned")} == {v1["sha256"]}
    # the same worker, a job naming no version: it follows CURRENT
    following = json.loads(run_farm(env, "generate", "--pool", "following", *small, cwd=tmp_path).stdout)
    assert following["substitutes"] == {"v2": 16}
    assert jobs.load(store, following["job"])["substitute"]["follows"] == "current"
