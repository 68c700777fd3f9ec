"""Fuzzing the captcha service from its own OpenAPI schema (schemathesis): whatever a request holds, the answer is
no 5xx, and a request refused with a 4xx changes nothing stored, neither in the store nor in Redis.

The service runs as in tests/test_service.py: uvicorn on a real socket, real Redis, moto's S3 server.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error

from farm.ops.studies import Arm, create_study
from tests.test_farm import redis_broker, redis_port  # noqa: F401 (fixtures)
from tests.test_pools_s3 import pool_env, s3_pool  # noqa: F401 (fixtures)
from tests.test_service import KEYS, redis_state, serve  # noqa: F401 (fixtures)

EXAMPLES = 100  # generated requests per operation (besides schemathesis' coverage cases): ~1 min in all on 2 cores
SEED = 20261123  # the same requests every run: a failure found once is found again
TICKETS = 6  # ids issued before the run: verifies, images and answers that reach the pool, not only refusals
KNOWN_VALUES = 0.5  # how often a pool name, an id or a number-like field takes a listed value, not a generated one
SHOP = {"X-API-Key": KEYS["shop"]}
# form fields the pages read as numbers: small ones that reach the session, and what str.isdigit() lets through
# but int() or a float cannot take (digits of other scripts, superscripts, thousands of digits)
NUMBER_LIKE = ["0", "1", "2", "²", "٣", "1" * 400, "9" * 5000]


@pytest.fixture
def service(serve):
    """The service, no served-marks flush meanwhile (Redis and the store change only by requests)."""
    return serve(served_flush=600, ttl=3600)  # and nothing issued expires during the run


def fuzz_config(values: dict[str, list], bindings: dict[str, str], **extra) -> schemathesis.Config:
    """Seeded generation, no stateful phase; `values`: real names, mixed into generated ones where `bindings` say."""
    return schemathesis.Config.from_dict({
        "seed": SEED, "generation": {"max-examples": EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "dictionaries": {name: {"values": listed} for name, listed in values.items()},
        "parameters": {where: {"dictionary": name, "probability": KNOWN_VALUES} for where, name in bindings.items()},
        **extra})


@pytest.fixture
def api_schema(service):
    """The service's OpenAPI schema, with real values mixed into the generated ones: a pool, ids it issued."""
    tickets = [requests.get(f"{service.url}/v1/captcha", params={"pool": "p"}, headers=SHOP, timeout=30).json()["id"]
               for _ in range(TICKETS)]
    config = fuzz_config({"pools": ["p"], "tickets": tickets},
                         {"query.pool": "pools", "path.ticket": "tickets", "body.id": "tickets",
                          "body.answers[*].id": "tickets"},
                         headers=SHOP)  # past the key check, where the work is; tests/test_service.py tests keys
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json", config=config)


def study_paths() -> dict:
    """The study pages as OpenAPI paths: the app leaves them out of its schema (pages for people, not an API)."""
    def path(name: str, schema: dict | None = None) -> dict:
        return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}

    page = {"responses": {"200": {"description": "A page."}}}
    form = {"type": "object", "required": ["step", "answer", "client_ms"],  # what the page's form always sends
            "properties": {name: {"type": "string"} for name in ("step", "answer", "client_ms", "skip")}}
    session = [path("name"), path("participant")]
    return {
        "/study/{name}": {"parameters": [path("name")], "get": page, "post": page},
        "/study/{name}/{participant}": {"parameters": session, "get": page, "post": {**page, "requestBody": {
            "required": True, "content": {"application/x-www-form-urlencoded": {"schema": form}}}}},
        "/study/{name}/{participant}/{step}.png": {"parameters": [*session, path("step", {"type": "integer"})],
                                                   "get": page},
    }


@pytest.fixture
def study_schema(service):
    """The study pages' schema, with a real study and participant mixed into the generated names."""
    create_study(service.app.state.store, "fuzz", [Arm("p", 3)])
    started = requests.post(f"{service.url}/study/fuzz", allow_redirects=False, timeout=30)
    assert started.status_code == 303, started.text
    participant = started.headers["location"].rsplit("/", 1)[1]
    schema = requests.get(f"{service.url}/openapi.json", timeout=30).json()
    schema["paths"] = study_paths()
    config = fuzz_config({"studies": ["fuzz"], "participants": [participant], "steps": [0, 1, 2],
                          "numbers": NUMBER_LIKE},
                         {"path.name": "studies", "path.participant": "participants", "path.step": "steps",
                          "body.step": "numbers", "body.client_ms": "numbers"})
    return schemathesis.openapi.from_dict(schema, config=config)


def stored(store) -> dict[str, str]:
    """Every object under the store's prefix and its ETag: what a refused request must leave as it was."""
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def call_and_check(case, service) -> None:
    """One request: no 5xx, and when it is refused (4xx), the store and Redis as they were."""
    store = service.app.state.store
    before = stored(store), redis_state(service.app)
    response = case.call(base_url=service.url, timeout=30, allow_redirects=False)
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        assert (stored(store), redis_state(service.app)) == before, case.as_curl_command()


api = schemathesis.pytest.from_fixture("api_schema")
study = schemathesis.pytest.from_fixture("study_schema")


@pytest.mark.slow
@api.parametrize()
def test_no_api_request_gets_a_5xx_and_none_refused_changes_what_is_stored(case, service):
    call_and_check(case, service)


@pytest.mark.slow
@study.parametrize()
def test_no_study_page_request_gets_a_5xx_and_none_refused_changes_what_is_stored(case, service):
    call_and_check(case, service)
