"""The captcha service as platforms and study participants use it: real Redis, moto S3, uvicorn on a real socket,
and Debian's Chromium driven by Selenium for the study page.

The pools come from tests/test_pools_s3.py (`p`: farm generate's defaults, 12 captchas) and
tests/test_refill.py's make_pool (8 clean captchas).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import requests
from PIL import Image
from click.testing import CliRunner

from farm.storage.answers import batches, read_batch
from farm.cli import main
from farm.core.spec import PoolSpec
from farm.storage.layout import image_key
from farm.storage.pools import read_keys
from farm.storage.served import read_served
from farm.service.app import ANSWERS_LIMIT_BYTES
from farm.service.settings import ServiceSettings, parse_api_keys, redact
from farm.storage.store import LocalStore, open_store
from farm.ops.studies import Arm, create_study, read_responses, report, wilson_interval, write_response
from tests.farm_parts import answers, free_port, procfile, stop, wait_for
from tests.fault_proxy import FaultProxy
from tests.test_farm import redis_broker, redis_port  # noqa: F401 (fixtures)
from tests.test_pools_s3 import pool_env, s3_pool  # noqa: F401 (fixtures)
from tests.test_refill import make_pool

KEYS = {"shop": "shop-key-0123456789abcdef", "forum": "forum-key-0123456789abcdef"}
SHOP = {"X-API-Key": KEYS["shop"]}
SCREENSHOT = os.environ.get("FARM_TEST_SCREENSHOT")  # also copy the study page's screenshot here (docs/)


@dataclass
class Service:
    url: str
    app: object

    def truth(self, ticket: str, platform: str = "shop") -> str:
        """What a right answer is (read server side, as only the test may)."""
        pool, cid = self.app.state.captchas.resolve(platform, ticket)
        return {r["id"]: r["answer"] for r in read_keys(self.app.state.store, pool)}[cid]

    def draw(self, pool: str = "p", headers=SHOP, **params) -> dict:
        response = requests.get(f"{self.url}/v1/captcha", params={"pool": pool, **params}, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def verify(self, ticket: str, answer: str, headers=SHOP) -> requests.Response:
        return requests.post(f"{self.url}/v1/verify", json={"id": ticket, "answer": answer}, headers=headers,
                             timeout=30)


@pytest.fixture
def serve(pool_env, redis_broker):
    """serve(**settings) -> a Service: the app on the test's pools and Redis, uvicorn in a thread on a free port."""
    import uvicorn

    from farm.service import create_app

    running = []

    def start(**settings) -> Service:
        settings = {"api_keys": KEYS, **settings}
        app = create_app(ServiceSettings(store=pool_env["url"], redis=redis_broker, **settings))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        running.append((server, thread))
        wait_for(lambda: server.started or not thread.is_alive(), 30, "the service to start")
        assert server.started, "the service did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        return Service(f"http://127.0.0.1:{port}", app)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(15)


# --- the API -------------------------------------------------------------------------------------------

def test_a_platform_draws_a_captcha_shows_its_image_and_verifies_the_right_answer_once(serve, pool_env):
    service = serve()
    shown = service.draw()
    assert set(shown) == {"id", "pool", "image_url", "expires_at", "ttl_seconds"} and shown["ttl_seconds"] == 300
    image = requests.get(shown["image_url"], timeout=30)  # the user's browser: no key
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG") and image.headers["cache-control"] == "no-store"
    pool, cid = service.app.state.captchas.peek(shown["id"])
    assert image.content == open_store(pool_env["url"]).get(image_key(pool, cid))
    assert Image.open(io.BytesIO(image.content)).mode == "RGB"  # classic in colour, as the platform's users see it
    records = read_keys(open_store(pool_env["url"]), "p")
    assert not any(r["id"] in json.dumps(shown) or r["answer"] in shown["id"] for r in records)  # nothing leaks

    truth = service.truth(shown["id"])
    right = service.verify(shown["id"], f" {truth} ")  # compared as PoolClient.verify compares
    assert right.status_code == 200 and right.json() == {"id": shown["id"], "result": "pass"}
    again = service.verify(shown["id"], truth)
    assert again.status_code == 409 and "already verified" in again.json()["error"]
    assert requests.get(shown["image_url"], timeout=30).status_code == 404  # a used captcha is shown no more


def test_a_wrong_answer_fails_and_uses_the_captcha_up(serve):
    service = serve()
    shown = service.draw(image="inline")
    assert shown["image"].startswith("data:image/png;base64,") and "image_url" not in shown
    assert base64.b64decode(shown["image"].split(",", 1)[1]).startswith(b"\x89PNG")
    truth = service.truth(shown["id"])
    wrong = service.verify(shown["id"], "0000" if truth != "0000" else "1111")
    assert wrong.status_code == 200 and wrong.json()["result"] == "fail"
    assert service.verify(shown["id"], truth).status_code == 409  # no second try with the right one


def test_racing_verifies_of_one_id_let_exactly_one_through(serve):
    service = serve()
    shown = service.draw()
    truth = service.truth(shown["id"])
    with ThreadPoolExecutor(8) as threads:
        codes = sorted(r.status_code for r in threads.map(lambda _: service.verify(shown["id"], truth), range(8)))
    assert codes == [200] + [409] * 7


def test_a_captcha_expires_after_its_ttl(serve):
    service = serve(ttl=1)
    shown = service.draw()
    assert shown["ttl_seconds"] == 1
    time.sleep(2.2)
    late = service.verify(shown["id"], "ABCD")
    assert late.status_code == 410 and "expired" in late.json()["error"] and "draw a new one" in late.json()["error"]
    assert requests.get(shown["image_url"], timeout=30).status_code == 404


def test_unknown_ids_and_other_platforms_ids_are_refused(serve):
    service = serve()
    for ticket, message in [("x" * 32, "unknown captcha id"), ("short", "not a captcha id"),
                            ("!" * 32, "not a captcha id")]:
        response = service.verify(ticket, "ABCD")
        assert response.status_code == 404 and message in response.json()["error"], response.text
    shown = service.draw()  # the shop's
    forum = service.verify(shown["id"], service.truth(shown["id"]), headers={"X-API-Key": KEYS["forum"]})
    assert forum.status_code == 404 and "not issued" in forum.json()["error"]
    assert service.verify(shown["id"], service.truth(shown["id"])).json()["result"] == "pass"  # still the shop's


def test_two_service_processes_share_one_state(serve, pool_env, substitute):
    make_pool(open_store(pool_env["url"]), substitute, "fresh", PoolSpec(count=16, shard_size=8, method="none"))
    a, b = serve(), serve()
    shown = a.draw("fresh")
    truth = a.truth(shown["id"])
    assert b.verify(shown["id"], truth).json()["result"] == "pass"
    assert a.verify(shown["id"], truth).status_code == 409
    held = [c.app.state.captchas.peek(c.draw("fresh")["id"])[1] for c in (a, b, a, b)]
    assert len(set(held)) == 4  # a captcha out with someone is not handed out by the other process


@pytest.mark.parametrize("request_args,status,message", [
    (dict(data="{not json", headers={"Content-Type": "application/json"}), 400, "body: not valid JSON"),
    (dict(data="id=1&answer=2", headers={"Content-Type": "application/x-www-form-urlencoded"}), 400,
     "body: must be a JSON object"),
    (dict(json={"id": "x" * 32}), 422, "answer: missing"),
    (dict(json={}), 422, "id: missing; answer: missing"),
    (dict(json={"id": "x" * 32, "answer": 7}), 422, "answer: input should be a valid string"),
    (dict(json={"id": "x" * 32, "answer": "A" * 65}), 422, "answer: string should have at most 64 characters"),
    (dict(json={"id": "x" * 32, "answer": "ABCD", "user": "alice@example.com"}), 422, "user: unknown field"),
    (dict(json=["x" * 32, "ABCD"]), 400, "body: must be a JSON object"),
    (dict(data="x" * 20_000, headers={"Content-Type": "application/json"}), 413, "over the limit of 8192 bytes"),
    (dict(json={"id": "x" * 32, "answer": "ABCD"}, headers={}), 401, "X-API-Key: missing"),
    (dict(json={"id": "x" * 32, "answer": "ABCD"}, headers={"X-API-Key": "shop-key-0123456789abcdeX"}), 401,
     "not a key of this service"),
])
def test_malformed_verify_requests_get_a_4xx_naming_what_is_wrong(serve, request_args, status, message):
    service = serve()
    request_args = dict(request_args)
    headers = request_args.pop("headers", None)
    headers = SHOP if headers is None else headers if status == 401 else {**SHOP, **headers}
    response = requests.post(f"{service.url}/v1/verify", headers=headers, timeout=30, **request_args)
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()


def test_a_body_streamed_without_a_length_is_cut_at_the_limit(serve):
    service = serve()
    chunks = (b"x" * 4096 for _ in range(8))  # chunked transfer: no Content-Length to check up front
    response = requests.post(f"{service.url}/v1/verify", data=chunks, headers={**SHOP, "Content-Type":
                                                                               "application/json"}, timeout=30)
    assert response.status_code == 413 and "8192" in response.json()["error"]


@pytest.mark.parametrize("params,status,message", [
    ({"pool": "nope"}, 404, "'nope' is not a pool of this service"),
    ({"pool": "../keys"}, 400, "pool: '../keys' must be letters"),
    ({}, 422, "pool: missing"),
    ({"pool": "p", "image": "gif"}, 422, "image: input should be 'url' or 'inline'"),
])
def test_draws_of_unknown_or_malformed_pools_get_a_4xx(serve, params, status, message):
    response = requests.get(f"{serve().url}/v1/captcha", params=params, headers=SHOP, timeout=30)
    assert response.status_code == status and message in response.json()["error"], response.text


def redis_state(app) -> dict:
    """Every key of the service's Redis database and its value (DUMP: the value, not the time to live)."""
    redis = app.state.redis
    return {key: redis.dump(key) for key in redis.keys("*")}


@pytest.mark.parametrize("image", ["url", "inline"])
def test_with_the_store_unreachable_a_draw_answers_503_soon_and_issues_nothing(serve, s3_env, monkeypatch, image):
    proxy = FaultProxy(s3_env).__enter__()  # the store's endpoint, until the test takes it away
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        service = serve(served_flush=600)  # no flush during the test: Redis changes only by requests
        service.draw()  # the pool's index is in memory now: a draw needs the store only for the image
        proxy.fail_first = 10**9  # connections kept alive answer 503 from now on, and new ones are refused
        proxy.server.shutdown()
        proxy.server.server_close()
        before = redis_state(service.app)
        started = time.monotonic()
        response = requests.get(f"{service.url}/v1/captcha", params={"pool": "p", "image": image}, headers=SHOP,
                                timeout=60)
        took = time.monotonic() - started
    finally:
        proxy.__exit__(None, None, None)
    assert response.status_code == 503 and response.json()["error"].startswith("store:"), response.text
    assert took < 15  # a hang guard: botocore's defaults took ~40 s
    assert redis_state(service.app) == before  # no ticket issued, no served mark, no captcha held


def test_flagged_users_answers_are_stored_as_farm_answers_ingest_would(serve, pool_env):
    service = serve()
    shown = [service.draw() for _ in range(2)]
    assert service.verify(shown[0]["id"], "ZZZZ").status_code == 200  # verified: still reportable
    when = "2026-11-23T10:00:00Z"
    records = [{"id": shown[0]["id"], "answer": "ZZ-Z", "risk": "attacker", "time": when},
               {"id": shown[1]["id"], "answer": "AB12", "risk": "suspicious", "time": when},
               {"id": "x" * 32, "answer": "AB12", "risk": "attacker", "time": when},
               {"id": shown[1]["id"], "answer": "AB12", "risk": "bot", "time": when},
               {"id": shown[1]["id"], "answer": "AB12", "risk": "attacker", "time": "yesterday"},
               {"id": shown[1]["id"], "answer": "AB12", "risk": "attacker", "time": when, "email": "a@b.c"},
               "not a record"]
    response = requests.post(f"{service.url}/v1/answers", json={"answers": records}, headers=SHOP, timeout=30)
    assert response.status_code == 200, response.text
    report_ = response.json()
    assert report_["accepted"] == 2 and report_["added"] == 2 and not report_["duplicate"]
    assert [r["record"] for r in report_["unreadable"]] == [1] and "'-'" in report_["unreadable"][0]["reason"]
    reasons = {r["record"]: r["reason"] for r in report_["rejected"]}
    assert sorted(reasons) == [3, 4, 5, 6, 7]
    assert "unknown captcha id" in reasons[3] and reasons[4].startswith("risk:") and reasons[5].startswith("time:")
    assert "unknown field(s): email" in reasons[6] and "not a JSON object" in reasons[7]
    store = open_store(pool_env["url"])
    (key,) = batches(store)
    stored = read_batch(store, key)
    cids = sorted(service.app.state.captchas.resolve("shop", s["id"])[1] for s in shown)
    assert sorted(r["captcha_id"] for r in stored) == cids and {r["pool"] for r in stored} == {"p"}
    again = requests.post(f"{service.url}/v1/answers", json={"answers": records[:2]}, headers=SHOP, timeout=30)
    assert again.json()["duplicate"] and again.json()["added"] == 0
    for body, status in [({"answers": []}, 422), ({"records": records}, 422), ([], 400)]:
        assert requests.post(f"{service.url}/v1/answers", json=body, headers=SHOP, timeout=30).status_code == status


def test_answers_under_the_documented_limit_are_accepted_whole(serve, pool_env):
    """8,200 ticket records (~0.9 MB) become ~1.1 MB of store records: the service's rewrite is no reason to refuse."""
    service = serve()
    store = open_store(pool_env["url"])
    cids = [r["id"] for r in read_keys(store, "p")]
    before = requests.post(f"{service.url}/v1/answers", headers=SHOP, timeout=30, json={"answers": [
        {"pool": "p", "captcha_id": cids[0], "answer": "AB12", "risk": "human", "time": "2026-11-22T10:00:00Z"}]})
    assert before.status_code == 200 and before.json()["added"] == 1, before.text
    stored = {key: store.get(key) for key in batches(store)}
    start = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    records = [{"id": service.app.state.captchas.issue("shop", "p", cids[n % len(cids)]).id, "answer": "AB12",
                "risk": "attacker", "time": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")}
               for n in range(8200)]
    body = json.dumps({"answers": records}).encode()
    assert len(body) < ANSWERS_LIMIT_BYTES
    response = requests.post(f"{service.url}/v1/answers", data=body, timeout=60,
                             headers={**SHOP, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    assert response.json()["accepted"] == 8200 and response.json()["rejected"] == []
    assert all(store.get(key) == data for key, data in stored.items())  # nothing stored before is lost
    (new,) = set(batches(store)) - set(stored)
    assert len(read_batch(store, new)) == 8200


def test_answer_records_too_long_are_rejected_one_by_one(serve, pool_env):
    service = serve()
    cid = read_keys(open_store(pool_env["url"]), "p")[0]["id"]
    good = {"pool": "p", "captcha_id": cid, "answer": "AB12", "risk": "attacker", "time": "2026-11-23T10:00:00Z"}
    # numbers grow when written again (1e15 -> 1000000000000000.0): the body is under its limit, the lines are not
    numbers = "[" + ",".join(["1e15"] * 100_000) + "]"
    ticket = service.app.state.captchas.issue("shop", "p", cid).id
    body = (f'{{"answers": [{json.dumps(good)}, {numbers}, {{"id": "{ticket}", "answer": "AB12", "risk": {numbers}, '
            f'"time": "2026-11-23T10:00:00Z"}}]}}').encode()
    assert len(body) < ANSWERS_LIMIT_BYTES
    response = requests.post(f"{service.url}/v1/answers", data=body, timeout=30,
                             headers={**SHOP, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    report_ = response.json()
    assert report_["accepted"] == 1 and [r["record"] for r in report_["rejected"]] == [2, 3]
    assert "the limit is 4096" in report_["rejected"][0]["reason"]


def test_answer_records_that_are_no_text_are_rejected_one_by_one(serve, pool_env):
    service = serve()
    cid = read_keys(open_store(pool_env["url"]), "p")[0]["id"]
    ticket = service.draw()["id"]
    body = ('{"answers": [{"pool": "p", "captcha_id": "%s", "answer": "AB12", "risk": "attacker", '
            '"time": "2026-11-23T10:00:00Z"}, {"id": "%s", "answer": "AB\\ud800", "risk": "attacker", '
            '"time": "2026-11-23T10:00:00Z"}, {"\\udfff": 1}]}' % (cid, ticket))  # valid JSON, lone surrogates
    response = requests.post(f"{service.url}/v1/answers", data=body.encode(), timeout=30,
                             headers={**SHOP, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert [(r["record"], r["reason"][:16]) for r in response.json()["rejected"]] == [(2, "not UTF-8 text: "),
                                                                                      (3, "not UTF-8 text: ")]


def test_served_marks_reach_the_store_and_counts_reach_prometheus(serve, pool_env):
    service = serve(served_flush=0.2)
    shown = [service.draw() for _ in range(3)]
    service.verify(shown[0]["id"], service.truth(shown[0]["id"]))
    service.verify(shown[1]["id"], "0000")
    service.verify(shown[1]["id"], "0000")
    cids = {service.app.state.captchas.resolve("shop", s["id"])[1] for s in shown}
    store = open_store(pool_env["url"])
    wait_for(lambda: cids <= {i for ids in read_served(store, "p").values() for i in ids}, 20, "the served marks")
    text = requests.get(f"{service.url}/metrics", timeout=30).text
    assert 'farm_service_captchas_served_total{platform="shop",pool="p"} 3.0' in text
    assert 'farm_service_verifications_total{platform="shop",pool="p",result="pass"} 1.0' in text
    assert 'farm_service_verify_refused_total{platform="shop",reason="used"} 1.0' in text
    assert 'farm_service_request_duration_seconds_count{route="/v1/captcha"} 3.0' in text
    assert "# HELP farm_service_captchas_served_total Captchas the service handed out" in text


def test_the_openapi_docs_describe_the_three_calls(serve):
    service = serve(api_keys={})  # no keys: open, every caller is the "default" platform
    docs = requests.get(f"{service.url}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = requests.get(f"{service.url}/openapi.json", timeout=30).json()
    assert {"/v1/captcha", "/v1/verify", "/v1/answers", "/v1/captcha/{ticket}.png"} <= set(spec["paths"])
    assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])
    assert not any(p.startswith("/study") for p in spec["paths"])
    shown = service.draw(headers={})
    assert service.verify(shown["id"], service.truth(shown["id"], "default"), headers={}).json()["result"] == "pass"
    assert requests.get(f"{service.url}/healthz", timeout=30).json() == {"status": "ok"}
    assert requests.get(f"{service.url}/v2/nothing", timeout=30).json()["error"].endswith("see /docs")


# --- settings ------------------------------------------------------------------------------------------

def test_api_keys_and_redis_urls_never_show_in_errors(monkeypatch):
    assert parse_api_keys(" shop=abcdefghijklmnop , forum=qrstuvwxyz012345") == {
        "shop": "abcdefghijklmnop", "forum": "qrstuvwxyz012345"}
    for value, message in [("shop", "entry 1"), ("shop=short-secret", "shorter than 16"),
                           ("Shop=abcdefghijklmnop", "entry 1"), ("a=abcdefghijklmnop,b=abcdefghijklmnop", "another"),
                           ("a=abcdefghijklmnop,a=qrstuvwxyz012345", "given twice")]:
        with pytest.raises(ValueError, match=message) as e:
            parse_api_keys(value)
        assert "secret" not in str(e.value) and "abcdefghijklmnop" not in str(e.value)
    assert redact("redis://:hunter2@host:6380/1") == "redis://:***@host:6380/1"
    monkeypatch.delenv("FARM_REDIS", raising=False)
    monkeypatch.setenv("FARM_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
    with pytest.raises(ValueError, match="FARM_REDIS: not set"):
        ServiceSettings.from_env()
    monkeypatch.setenv("FARM_BROKER", "redis://:hunter2@127.0.0.1:6379/3")
    assert ServiceSettings.from_env().redis.endswith("/3")  # the broker's Redis when it is one
    monkeypatch.setenv("FARM_REDIS", "http://:hunter2@host/")
    with pytest.raises(ValueError, match="FARM_REDIS") as e:
        ServiceSettings.from_env()
    assert "hunter2" not in str(e.value)
    monkeypatch.setenv("FARM_API_KEYS", "shop=hunter2hunter2hunter2")
    assert "hunter2" not in repr(ServiceSettings.from_env(redis="redis://127.0.0.1:6379/0"))


@pytest.mark.parametrize("value", [",", " ", "", " , ,"])
def test_api_keys_set_but_empty_refuse_to_start(monkeypatch, value):
    monkeypatch.setenv("FARM_API_KEYS", value)
    monkeypatch.setenv("FARM_STORE", "ftp://nowhere")  # were the settings taken, start-up still stops short of serving
    with pytest.raises(ValueError, match="FARM_API_KEYS: set but holds no key.*platform=key.*unset"):
        ServiceSettings.from_env(redis="redis://127.0.0.1:6379/0")
    result = CliRunner().invoke(main, ["serve", "--redis", "redis://127.0.0.1:6379/0"])
    assert result.exit_code != 0 and "FARM_API_KEYS: set but holds no key" in result.output


def test_an_open_service_warns_at_start_up(monkeypatch, serve, caplog):
    monkeypatch.delenv("FARM_API_KEYS", raising=False)
    assert ServiceSettings.from_env(redis="redis://127.0.0.1:6379/0").api_keys == {}  # absent: open
    with caplog.at_level("WARNING", logger="farm.service.app"):
        serve(api_keys={})
    assert any(r.levelname == "WARNING" and "FARM_API_KEYS is not set" in r.getMessage() and "open to anyone"
               in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize("setting,value,message", [
    ("ttl", 4_000_000_000, r"ttl \(--ttl / FARM_CAPTCHA_TTL\): 4000000000 seconds is out of bounds; .* at most 3600"),
    ("ttl", 0, r"ttl \(--ttl / FARM_CAPTCHA_TTL\): 0 seconds is out of bounds"),
    ("ttl", 1.5, r"ttl \(--ttl / FARM_CAPTCHA_TTL\): 1.5 is not a whole number"),
    ("answer_window", 10**12, r"answer_window \(--answer-window\): .* at most 2592000"),
    ("served_flush", float("nan"), r"served_flush .*: nan seconds is out of bounds"),
    ("max_age", 1e9, r"max_age .* at most 3600"),
])
def test_service_settings_out_of_bounds_are_refused_naming_the_setting(setting, value, message):
    with pytest.raises(ValueError, match=message):
        ServiceSettings(redis="redis://127.0.0.1:6379/0", **{setting: value})


def test_farm_serve_refuses_a_ttl_over_its_bound(monkeypatch):
    monkeypatch.setenv("FARM_STORE", "ftp://nowhere")  # were the ttl taken, start-up still stops short of serving
    result = CliRunner().invoke(main, ["serve", "--redis", "redis://127.0.0.1:6379/0", "--ttl", "4000000000"])
    assert result.exit_code != 0 and "ttl (--ttl / FARM_CAPTCHA_TTL)" in result.output and "3600" in result.output
    monkeypatch.setenv("FARM_CAPTCHA_TTL", "4000000000")
    result = CliRunner().invoke(main, ["serve", "--redis", "redis://127.0.0.1:6379/0"])
    assert result.exit_code != 0 and "at most 3600" in result.output


def test_the_procfile_serves_the_api_on_its_port():
    line = procfile()["web"]
    assert "farm serve" in line and "--port $PORT" in line and "--host 0.0.0.0" in line
    assert line.startswith("exec ") or " exec " in line  # the server gets the signals, as the workers do


@pytest.mark.slow
def test_farm_serve_from_the_procfile_answers_draws(pool_env, redis_broker, tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "FARM_REDIS": redis_broker, "FARM_API_KEYS": f"shop={KEYS['shop']}"}
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen(procfile()["web"], shell=True, env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        service = Service(f"http://127.0.0.1:{port}", None)
        wait_for(lambda: answers(port) or process.poll() is not None, 120, "farm serve to listen")  # after startup
        assert process.poll() is None, (tmp_path / "web.log").read_text()
        assert requests.get(f"{service.url}/healthz", timeout=30).json() == {"status": "ok"}
        shown = service.draw()
        assert requests.get(shown["image_url"], timeout=30).content.startswith(b"\x89PNG")
        assert service.verify(shown["id"], "").json()["result"] == "fail"
    finally:
        stop(process)
    assert KEYS["shop"] not in (tmp_path / "web.log").read_text()


# --- the study ------------------------------------------------------------------------------------------

def test_the_report_gives_wilson_and_bootstrap_intervals_per_pool(tmp_path, substitute):
    store = LocalStore(tmp_path / "store")
    make_pool(store, substitute, "clean")
    create_study(store, "s", [Arm("clean", 4)])
    for participant, (correct, seconds) in enumerate([(True, 2.0), (True, 3.0), (False, 9.0), (True, 4.0)]):
        write_response(store, {"study": "s", "participant": f"{participant:032x}", "step": 0, "pool": "clean",
                               "captcha_id": "0" * 32, "answer": "X", "correct": correct, "seconds": seconds})
    summary = report(store, "s")
    (row,) = summary["pools"]
    assert (row["answers"], row["passed"], row["participants"], row["pass_rate"]) == (4, 3, 4, 0.75)
    assert row["pass_rate_ci"] == pytest.approx(wilson_interval(3, 4)) and row["pass_rate_ci"][0] < 0.75
    assert row["pass_rate_ci"] == pytest.approx((0.3006, 0.9544), abs=1e-3)  # Wilson, 3/4 at 95%
    assert row["median_seconds"] == 3.5 and row["median_seconds_ci"][0] <= 3.5 <= row["median_seconds_ci"][1]
    assert report(store, "s") == summary  # seeded: the same responses, the same intervals
    assert row["label"] == "clean" and summary["finished"] == 0  # a 4-step study: step 0 finishes nobody
    with pytest.raises(Exception, match="exists already"):
        create_study(store, "s", [Arm("clean", 1)])
    with pytest.raises(Exception, match="does not exist"):
        create_study(store, "t", [Arm("nope", 1)])


def chromium():
    """A headless Debian Chromium under Selenium; fails (not skips) when it is missing: scripts/setup --test installs it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("chromium / chromedriver: not installed; install Debian's chromium and chromium-driver "
                    "(scripts/setup --test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=760,720",
                     "--disable-gpu", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=DriverService(driver))


def left_the_page(element) -> bool:
    """The page moved on. Like Selenium's staleness_of, but mid-navigation Chromium may also answer
    "Node with given id does not belong to the document" (a WebDriverException, not a stale element)."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


@pytest.mark.slow  # a browser starts in 5-10 s on a busy 2-core machine
def test_a_participant_answers_three_captchas_in_chromium_and_the_report_counts_them(serve, pool_env, substitute,
                                                                                     tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    from farm.service.study_page import StudySessions

    store = open_store(pool_env["url"])
    make_pool(store, substitute, "clean")
    runner = CliRunner()
    created = runner.invoke(main, ["study", "create", "signup", "--pool", "clean=2", "--pool", "p=1",
                                   "--title", "Can you read these?"])
    assert created.exit_code == 0 and "3 captchas per participant" in created.output, created.output
    service = serve()
    sessions = StudySessions(service.app.state.redis)
    truths = {pool: {r["id"]: r["answer"] for r in read_keys(store, pool)} for pool in ("clean", "p")}

    browser = chromium()
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(f"{service.url}/study/signup")
        assert "Can you read these?" in browser.page_source and "3 captchas" in browser.page_source
        browser.find_element(By.ID, "start").click()
        typed = []
        for step in range(3):
            box = wait.until(seen.presence_of_element_located((By.ID, "answer")))
            assert f"Captcha {step + 1} of 3" in browser.page_source
            image = browser.find_element(By.ID, "captcha")
            wait.until(lambda b, image=image: b.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image))
            participant = browser.current_url.rstrip("/").rsplit("/", 1)[1]
            shown = sessions.get("signup", participant)["plan"][step]
            truth = truths[shown["pool"]][shown["captcha_id"]]
            assert truth not in browser.page_source and shown["captcha_id"] not in browser.page_source
            if step == 0:
                shot = tmp_path / "study-page.png"
                box.send_keys(truth[:2])
                browser.save_screenshot(str(shot))
                print(f"\nstudy page screenshot: {shot}")
                if SCREENSHOT:
                    shutil.copy(shot, SCREENSHOT)
                assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 5000
                seen_pixels = np.asarray(Image.open(io.BytesIO(image.screenshot_as_png)).convert("RGB")).astype(int)
                assert (seen_pixels.max(2) - seen_pixels.min(2)).mean() > 2  # the browser shows colour
                box.send_keys(truth[2:])  # typed right, by the keyboard
            else:
                box.send_keys("0000" if truth != "0000" else "1111")  # typed wrong
            typed.append((shown["pool"], step == 0))
            browser.find_element(By.ID, "next").click()
            wait.until(lambda _, old=box: left_the_page(old))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Thank you!"
        assert browser.find_element(By.ID, "code").text == participant[:8]
        browser.back()  # a stale tab sends step 2 again: nothing more is recorded
        if browser.find_elements(By.ID, "answer"):
            browser.find_element(By.ID, "answer").send_keys("ABCD")
            browser.find_element(By.ID, "next").click()
    finally:
        browser.quit()

    monkeypatch.setenv("FARM_STORE", pool_env["url"])
    plot = tmp_path / "report.png"
    result = runner.invoke(main, ["study", "report", "signup", "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["answers"] == 3 and summary["participants"] == 1 and summary["finished"] == 1
    rows = {r["pool"]: r for r in summary["pools"]}
    assert rows["clean"]["answers"] == 2 and rows["p"]["answers"] == 1
    for pool in ("clean", "p"):
        assert rows[pool]["passed"] == sum(right for p, right in typed if p == pool)
        assert all(0 <= r["median_seconds"] < 60 for r in summary["pools"])
    assert plot.read_bytes().startswith(b"\x89PNG")
    responses = read_responses(store, "signup")
    assert all(r["client_seconds"] is not None for r in responses)  # the page's script ran (CSP nonce) and timed
    assert sorted(r["answer"] == truths[r["pool"]][r["captcha_id"]] for r in responses) == [False, False, True]
    text = runner.invoke(main, ["study", "report", "signup"])
    assert text.exit_code == 0 and "1 participants (1 finished all 3), 3 answers" in text.output
    metrics = requests.get(f"{service.url}/metrics", timeout=30).text
    assert 'farm_service_study_answers_total{pool="clean",study="signup"} 2.0' in metrics
