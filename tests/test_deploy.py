"""deploy/ as operators use it: Prometheus accepts the config and rules and every alert has a unit test, the
dashboard and rules name only metrics the farm exports, and the compose file, the Kubernetes manifests and
the images run the Procfile's processes with settings and ports the project really has.

Beside that, every manifest is checked against its schema, offline: the Kubernetes manifests with
kubernetes-validate (tests/kubernetes_schemas.py), the compose file with the compose specification's schema that
check-jsonschema vendors; each check is shown to refuse a broken copy.

promtool comes with Debian's `prometheus` package (scripts/setup --test installs it): missing, the tests fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.farm_parts import ROOT, procfile
from tests.kubernetes_schemas import CUSTOM_RESOURCES, problems

DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
K8S = DEPLOY / "k8s"
METRIC = re.compile(r"\bfarm[_:][a-zA-Z0-9_:]*")


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool: not installed; install Debian's prometheus package (scripts/setup --test does)")
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
            for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def exported_series() -> set[str]:
    """Every series name the farm's registry can export (counters with _total, histograms with their parts)."""
    from prometheus_client import CollectorRegistry

    from workers.metrics import FarmMetrics
    names = set()
    for family in FarmMetrics(CollectorRegistry()).registry.collect():
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "gauge": ("",)}[family.type]
        names |= {family.name + suffix for suffix in suffixes}
    return names


def project_variables() -> set[str]:
    """Environment variables the project reads (farm/, workers/, the Procfile) or documents (the AWS_* ones)."""
    names = set()
    for path in [*ROOT.glob("farm/**/*.py"), *ROOT.glob("workers/**/*.py")]:
        names |= set(re.findall(r"\b((?:FARM|AWS|PROMETHEUS)_[A-Z0-9_]+)\b", path.read_text()))
    names |= set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "Procfile").read_text()))
    names |= set(re.findall(r"\b(AWS_[A-Z0-9_]+)\b", (ROOT / "docs/platforms.md").read_text()))
    return names


def manifests() -> list[dict]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


# --- Prometheus ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_promtool_accepts_the_prometheus_configs_and_their_rules(config):
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules.yml" in result.stdout  # the rule files were checked with it


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_passing_promtool_test_that_fires_it():
    result = promtool("test", "rules", "tests.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts == {"FarmGenerationStalled", "FarmCheckpointLoadsFailing", "FarmPoolBelowFloor",
                      "FarmFinetuneFailing", "FarmGeneratorTrainingFailing"}
    cases = [case for test in yaml.safe_load((PROMETHEUS / "tests.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fired == alerts, "an alert has no test where it fires"
    assert quiet == alerts, "an alert has no test where it must stay quiet"


def test_recording_rules_give_the_generation_rate_by_scheme_and_method():
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    assert "sum by (scheme, method) (rate(farm_captchas_generated_total[5m]))" in recorded.values()


# --- metrics named by the dashboard and the rules --------------------------------------------------------

def test_every_metric_of_the_dashboard_and_the_rules_is_exported_by_the_farm():
    exported = exported_series()
    recorded = {r["record"] for r in rules() if "record" in r}
    expressions = dashboard_expressions() + [r["expr"] for r in rules()]
    named = {name for expr in expressions for name in METRIC.findall(expr)}
    assert named, "no metric found: the pattern no longer matches the expressions"
    unknown = {n for n in named if n not in exported and n not in recorded}
    assert not unknown, f"not in workers/metrics.py nor recorded by rules.yml: {sorted(unknown)}"


def test_the_dashboard_shows_what_operators_watch():
    text = " ".join(dashboard_expressions())
    for needed in ("farm:captchas_generated:rate5m", "farm:stage_seconds:rate5m", "farm:substitute_solved:ratio_rate5m",
                   "farm_queue_length", "farm_worker_consuming", "farm_checkpoint_version",
                   "farm_pool_unused_captchas"):
        assert needed in text, needed
    dashboard = json.loads((DEPLOY / "grafana/dashboard.json").read_text())
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    sources = {json.dumps(p["datasource"]) for p in dashboard["panels"]}
    assert sources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}


def test_the_new_operator_metrics_have_a_sentence_of_help():
    from prometheus_client import CollectorRegistry

    from workers.metrics import FarmMetrics
    helps = {m.name: m.documentation for m in FarmMetrics(CollectorRegistry()).registry.collect()}
    for name in ("farm_pool_unused_captchas", "farm_pool_floor_captchas", "farm_pool_complete_captchas",
                 "farm_pool_refill_captchas", "farm_queue_length", "farm_worker_consuming"):
        assert helps[name][0].isupper() and helps[name].endswith("."), helps[name]


# --- the Procfile, the images and compose ----------------------------------------------------------------

def test_the_procfile_runs_one_beat_process_that_refills_and_consumes_only_the_refill_queue():
    line = procfile()["beat"]
    assert "--beat" in line and "--pool=solo" in line and "--queues=refill" in line
    assert "FARM_METRICS_PORT=$PORT" in line
    from workers.app import create_app
    conf = create_app("redis://127.0.0.1:6379/0").conf
    assert conf.task_routes["refill_pools"] == {"queue": "refill"}
    schedule = conf.beat_schedule["refill-pools"]
    assert schedule["task"] == "refill_pools" and schedule["options"]["queue"] == "refill"


def test_bad_refill_seconds_name_the_variable(monkeypatch):
    from workers.app import create_app
    monkeypatch.setenv("FARM_REFILL_SECONDS", "often")
    with pytest.raises(ValueError, match="FARM_REFILL_SECONDS"):
        create_app("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("dockerfile", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_the_images_copy_what_exists_and_start_the_procfile_entrypoint(dockerfile):
    text = (DEPLOY / "docker" / dockerfile).read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}: no such file in the repository"
    assert 'ENTRYPOINT ["tini", "--", "entrypoint"]' in text
    default = re.search(r'^CMD \["(\w+)"\]', text, re.M).group(1)
    assert default in procfile()
    assert "torch==2.13.0" in text and "torch==2.13.0" in (ROOT / "scripts/setup").read_text()  # one pin


def test_the_entrypoint_runs_a_procfile_line_by_name_and_anything_else_as_given(tmp_path):
    entrypoint = DEPLOY / "docker/entrypoint"
    (tmp_path / "Procfile").write_text('generate: echo "metrics on $PORT"\n')

    def run(*args, **env):
        return subprocess.run(["sh", str(entrypoint), *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", **env}, timeout=30)
    assert run("generate", PORT="5000").stdout == "metrics on 5000\n"
    assert run("echo", "farm", "pool", "list").stdout == "farm pool list\n"
    missing_port = run("generate")
    assert missing_port.returncode != 0 and "PORT" in missing_port.stderr
    assert run("beat", PORT="5200").returncode != 0  # not in this Procfile
    assert set(re.search(r"^\s+([\w|]+)\)$", entrypoint.read_text(), re.M).group(1).split("|")) == set(procfile())


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def farm_services() -> dict[str, dict]:
    """Compose services built from the project's Dockerfiles."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def test_compose_runs_the_procfile_processes_with_the_project_settings():
    services, variables = farm_services(), project_variables()
    assert {name for name, s in services.items() if s["command"][0] in procfile()} == {"generate", "finetune", "beat"}
    for name, service in services.items():
        assert (ROOT / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]).exists(), name
        unknown = set(service["environment"]) - variables
        assert not unknown, f"{name}: environment variables the project does not read: {sorted(unknown)}"
        command = service.get("entrypoint", [])[3:] + service["command"]  # the cli service runs `farm ...`
        assert command[0] in procfile() or command[0] == "farm", name
    gpu = services["generate"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "--appendonly" in compose()["services"]["redis"]["command"]  # the broker survives a restart


def test_compose_metrics_ports_are_the_ones_prometheus_scrapes():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    scraped = {sd["names"][0]: sd["port"] for job in config["scrape_configs"] for sd in job["dns_sd_configs"]}
    ports = {name: int(s["environment"]["PORT"]) for name, s in farm_services().items() if "PORT" in s["environment"]}
    assert scraped == ports == {"generate": 5000, "finetune": 5100, "beat": 5200}


def test_compose_mounts_files_that_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def check_compose_file(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with the compose specification's schema it vendors (nothing fetched)."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def broken_copy(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a deploy/ file with one change: the check must refuse it, or it would not catch that mistake."""
    text = source.read_text()
    assert text.count(old) == 1, f"{source.name}: {old!r} is not there once; update this test's broken copies"
    copy = tmp_path / source.name
    copy.write_text(text.replace(old, new))
    return copy


def test_compose_matches_the_compose_specification():
    result = check_compose_file(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old, new, complaint", [
    ("stop_grace_period: 1m", "stop_grace_perod: 1m", "'stop_grace_perod' was unexpected"),  # a typo'd key
    ("condition: service_healthy", "condition: healthy", "services.generate.depends_on.redis.condition"),
])
def test_the_compose_check_refuses_a_broken_compose_file(tmp_path, old, new, complaint):
    result = check_compose_file(broken_copy(tmp_path, DEPLOY / "compose.yaml", old, new))
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


# --- Kubernetes --------------------------------------------------------------------------------------------

def kubernetes_objects() -> list[tuple[str, dict]]:
    """Every object of deploy/k8s with its file. kustomization.yaml is not one: it is kustomize's build file,
    and kustomize, which refuses its unknown fields, checks it in test_kustomize_renders_the_manifests."""
    return [(path.name, document) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.mark.parametrize("manifest, document", kubernetes_objects(),
                         ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in kubernetes_objects()])
def test_every_kubernetes_object_matches_its_schema(manifest, document):
    found = problems(document)
    assert found is None, f"{manifest}: {found}"


def test_every_custom_resource_schema_is_used():
    used = {(d["apiVersion"], d["kind"]) for _, d in kubernetes_objects()}
    assert set(CUSTOM_RESOURCES) <= used, "a schema in tests/kubernetes_schemas.py checks nothing: remove it"


@pytest.mark.parametrize("manifest, old, new, complaint", [
    ("generate.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:",
     "spec.template.spec: Additional properties are not allowed ('terminationGracePeriodSecond' was unexpected)"),
    ("beat.yaml", "containerPort: 5200", 'containerPort: "5200"', "'5200' is not of type 'integer'"),
    ("beat.yaml", "kind: Deployment", "kind: Deploymnet", "Couldn't find schema for kind Deploymnet"),
    ("keda.yaml", "cooldownPeriod: 600", "cooldownPeriods: 600", "'cooldownPeriods' was unexpected"),
    ("keda.yaml", 'listLength: "4"', "listLength: 4", "spec.triggers.0.metadata.listLength: 4 is not of type"),
    ("keda.yaml", "  scaleTargetRef:\n    name: farm-finetune\n", "", "'scaleTargetRef' is a required property"),
    ("keda.yaml", "stabilizationWindowSeconds", "stabilisationWindowSeconds", "'stabilisationWindowSeconds'"),
    ("monitoring.yaml", "targetLabel: process", "targetLable: process", "'targetLable' was unexpected"),
])
def test_the_kubernetes_check_refuses_a_broken_manifest(tmp_path, manifest, old, new, complaint):
    copy = broken_copy(tmp_path, K8S / manifest, old, new)
    found = [problems(d) for d in yaml.safe_load_all(copy.read_text()) if d]
    assert any(complaint in (p or "") for p in found), found



def test_kubernetes_manifests_run_the_procfile_processes_with_the_project_settings():
    documents, variables = manifests(), project_variables()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == listed
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    secrets = {g["name"]: env_file(K8S / (g["envs"][0] + ".example")) for g in kustomization["secretGenerator"]}
    provided = {"farm-config": set(config["data"]), "farm-secret": set(secrets["farm-secret"])}
    assert not (provided["farm-config"] | provided["farm-secret"]) - variables
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) == {"farm-generate", "farm-finetune", "farm-beat"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][0] in procfile() and len(container["args"]) == 1, name
        sources = {e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]}
        assert sources == {"farm-config", "farm-secret"}
        assert not {e["name"] for e in container["env"]} - variables, name
        port = int(next(e["value"] for e in container["env"] if e["name"] == "PORT"))
        assert container["ports"] == [{"name": "metrics", "containerPort": port}], name
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
        (service,) = [d for d in documents if d["kind"] == "Service" and d["spec"]["selector"] == labels]
        assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}], name
    generate = deployments["farm-generate"]["spec"]
    assert generate["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "replicas" not in generate  # KEDA owns it
    from workers.metrics import SHARD_DURATION_BUCKETS
    assert generate["template"]["spec"]["terminationGracePeriodSeconds"] > SHARD_DURATION_BUCKETS[-1]
    assert deployments["farm-beat"]["spec"]["replicas"] == 1
    assert deployments["farm-beat"]["spec"]["strategy"]["type"] == "Recreate"  # never two schedulers


def test_keda_scales_each_worker_on_its_own_celery_list():
    from workers.app import QUEUES
    documents = manifests()
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in documents if d["kind"] == "ScaledObject"}
    assert set(scaled) == {"farm-generate", "farm-finetune"}
    for name, scaled_object in scaled.items():
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "redis"
        queue = trigger["metadata"]["listName"]
        assert queue in QUEUES and f"--queues={queue}" in procfile()[deployments[name]["spec"]["template"]["spec"]
                                                                     ["containers"][0]["args"][0]]
        auth = trigger["authenticationRef"]["name"]
        assert any(d["kind"] == "TriggerAuthentication" and d["metadata"]["name"] == auth for d in documents)


def test_the_k8s_prometheus_config_scrapes_the_metrics_services():
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    scraped = {sd["names"][0].split(".")[0]: sd["port"] for job in config["scrape_configs"]
               for sd in job["dns_sd_configs"]}
    services = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in manifests() if d["kind"] == "Service"}
    assert scraped == services
    assert all(d["spec"]["clusterIP"] == "None" for d in manifests() if d["kind"] == "Service")  # one address a pod


def test_kustomize_renders_the_manifests(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the YAML tests above still parse every manifest")
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    for example in folder.glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = [d["kind"] for d in rendered]
    assert kinds.count("Deployment") == 3 and kinds.count("Secret") == 2 and "ScaledObject" in kinds
    found = {f"{d['kind']}/{d['metadata']['name']}": problems(d) for d in rendered}  # the generated Secrets too
    assert not any(found.values()), found


def test_every_farm_setting_is_documented():
    documented = (ROOT / "docs/farm.md").read_text() + (ROOT / "docs/platforms.md").read_text()
    missing = sorted(v for v in project_variables() if v.startswith("FARM_") and v not in documented)
    assert not missing, f"read by the code but not in docs/farm.md: {missing}"
