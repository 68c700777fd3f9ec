"""The study page against hand-made posts and nearly dry pools: real Redis, moto S3, uvicorn on a real socket.

A participant link is all a prober needs to post the answer form, so whatever it sends must get a
4xx naming the field (or the page again), never a 5xx, and must leave Redis and the store as they were.
"""

from __future__ import annotations

import logging

import boto3
import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from farm.ops.client import PoolClient
from farm.core.charset import MAX_ANSWER_CHARS
from farm.storage.pools import read_keys
from farm.service.study_page import MAX_CLIENT_MS, StudySessions
from farm.storage.store import open_store
from farm.ops.studies import Arm, create_study, read_responses, study_key
from tests.test_farm import redis_broker, redis_port  # noqa: F401 (fixtures)
from tests.test_pools_s3 import pool_env, s3_pool  # noqa: F401 (fixtures)
from tests.test_refill import make_pool
from tests.test_service import serve  # noqa: F401 (fixture)

STEPS = 3  # captchas of pool p each participant sees
TRICKY = ["²", "١", "１", "9" * 5000, "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "00", "NaN", "∞", "\x00", "",
          str(MAX_CLIENT_MS + 1), "9" * 30, "A" * (MAX_ANSWER_CHARS + 1)]


class Participant:
    """One participant of study `s` over pool p, posting through the real service."""

    def __init__(self, service, store, bucket: str):
        self.service, self.store, self.bucket = service, store, bucket
        self.sessions = StudySessions(service.app.state.redis)
        self.start()

    def start(self) -> None:
        started = requests.post(f"{self.service.url}/study/s", allow_redirects=False, timeout=30)
        assert started.status_code == 303, started.text
        self.url = f"{self.service.url}{started.headers['location']}"
        self.id = self.url.rsplit("/", 1)[1]
        self.look()

    def look(self) -> None:
        """Open the current page, as a browser does before posting (it marks when the step was shown)."""
        assert requests.get(self.url, timeout=30).status_code == 200

    def step(self) -> int:
        return self.sessions.get("s", self.id)["step"]

    def post(self, **form) -> requests.Response:
        return requests.post(self.url, data={k: v for k, v in form.items() if v is not None},
                             allow_redirects=False, timeout=30)

    def stored(self) -> tuple[dict, dict]:
        """Everything a post could change: every key of the test's Redis database, every object of the study."""
        redis = self.service.app.state.redis
        keys = {k: redis.dump(k) for k in redis.keys("*")}
        listed = boto3.client("s3").list_objects_v2(Bucket=self.bucket, Prefix="farm/studies/").get("Contents", [])
        return keys, {o["Key"]: o["ETag"] for o in listed}


@pytest.fixture
def participant(serve, pool_env):  # noqa: F811 (fixture)
    store = open_store(pool_env["url"])
    create_study(store, "s", [Arm("p", STEPS)], replace=True)
    return Participant(serve(), store, pool_env["bucket"])


def well_formed(form: dict, step: int) -> bool:
    """Whether a browser could have sent this form for the step shown (the oracle of the property tests)."""
    client_ms = form.get("client_ms") or "0"
    return (form.get("step") == str(step) and client_ms.isascii() and client_ms.isdigit()
            and len(client_ms) <= len(str(MAX_CLIENT_MS)) and int(client_ms) <= MAX_CLIENT_MS
            and len(form.get("answer") or "") <= MAX_ANSWER_CHARS)


# --- item 3: malformed fields --------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("step", "²"), ("step", "9" * 5000), ("step", "١"), ("step", "１"), ("step", "-1"), ("step", "0.0"),
    ("step", str(STEPS)), ("step", ""), ("step", None),
    ("client_ms", "²"), ("client_ms", "9" * 5000), ("client_ms", "١"), ("client_ms", "-5"), ("client_ms", "1.5"),
    ("client_ms", str(MAX_CLIENT_MS + 1)),
    ("answer", "A" * (MAX_ANSWER_CHARS + 1)),
], ids=lambda v: f"{len(v)}-chars" if v and len(v) > 12 else repr(v))
def test_a_malformed_answer_post_gets_a_400_naming_the_field_and_changes_nothing(participant, field, value):
    before = participant.stored()
    response = participant.post(**{"step": "0", "answer": "ABCD", "client_ms": "1500", field: value})
    assert response.status_code == 400, (field, value[:20] if value else value, response.status_code)
    assert f"{field}: " in response.text and "Traceback" not in response.text
    assert f'href="/study/s/{participant.id}"' in response.text  # back to the captcha, not a new session
    assert participant.stored() == before


def test_after_malformed_posts_the_participant_still_answers_the_step(participant):
    for bad in ("²", "9" * 5000):
        assert participant.post(step="0", answer="ABCD", client_ms=bad).status_code == 400
    assert participant.post(step="0", answer="ABCD", client_ms="1500").status_code == 303
    (recorded,) = read_responses(participant.store, "s")
    assert (recorded["step"], recorded["answer"], participant.step()) == (0, "ABCD", 1)
    assert participant.post(step="0", answer="EFGH").status_code == 303  # a stale tab: the page again, nothing kept
    assert len(read_responses(participant.store, "s")) == 1 and participant.step() == 1


# --- the guard: arbitrary text in every field -------------------------------------------------------------

field_text = st.one_of(st.none(), st.sampled_from(TRICKY), st.text(max_size=80),
                       st.integers(-10, 10 ** 8).map(str))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(step=st.one_of(field_text, st.just("CURRENT")), answer=field_text, client_ms=field_text, skip=field_text)
def test_any_text_in_any_field_gets_no_5xx_and_a_rejected_post_changes_nothing(participant, step, answer,
                                                                            client_ms, skip):
    if participant.step() >= STEPS:  # answered every captcha: a fresh participant
        participant.start()
    current = participant.step()
    form = {"step": str(current) if step == "CURRENT" else step, "answer": answer, "client_ms": client_ms,
            "skip": skip}
    before = participant.stored()
    response = participant.post(**form)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: how many were accepted
    assert response.status_code < 500 and "Traceback" not in response.text, (form, response.text[:300])
    if well_formed(form, current):
        assert response.status_code == 303 and participant.step() == current + 1
        participant.look()
    else:
        assert (response.status_code == 303 or 400 <= response.status_code < 500) and participant.stored() == before, \
            form


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: ("step=0&" + t).encode()))
def test_any_bytes_as_the_body_get_no_5xx_and_a_4xx_changes_nothing(participant, body):
    if participant.step() >= STEPS:
        participant.start()
    before = participant.stored()
    response = requests.post(participant.url, data=body, allow_redirects=False, timeout=30,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code < 500 and "Traceback" not in response.text, (body, response.text[:300])
    if response.status_code >= 400:
        assert participant.stored() == before, body


# --- item 6: a nearly dry pool -------------------------------------------------------------------------------

def test_a_plan_never_shows_one_captcha_twice_when_the_pool_is_nearly_all_served(serve, pool_env,  # noqa: F811
                                                                                 substitute):
    store = open_store(pool_env["url"])
    make_pool(store, substitute, "dry")  # 8 captchas
    ids = sorted(r["id"] for r in read_keys(store, "dry"))
    PoolClient(store).served("dry", ids[1:])  # one captcha left unused
    create_study(store, "dry-study", [Arm("dry", 3), Arm("p", 2)])
    service = serve()
    sessions = StudySessions(service.app.state.redis)
    for _ in range(6):
        started = requests.post(f"{service.url}/study/dry-study", allow_redirects=False, timeout=30)
        assert started.status_code == 303, started.text
        plan = sessions.get("dry-study", started.headers["location"].rsplit("/", 1)[1])["plan"]
        shown = [(p["pool"], p["captcha_id"]) for p in plan]
        assert len(shown) == 5 and len(set(shown)) == 5, shown  # distinct, every step of the study
        assert ("dry", ids[0]) in shown  # the unused one first; served ones fill the rest


def test_a_study_asking_more_captchas_than_a_pool_holds_is_refused(pool_env, substitute):  # noqa: F811
    store = open_store(pool_env["url"])
    make_pool(store, substitute, "small")  # 8 captchas
    with pytest.raises(ValueError, match=r"pools: small=9: .*holds 8 complete captchas.*farm pool refill"):
        create_study(store, "too-many", [Arm("small", 9)])


def test_a_participant_is_refused_when_a_pool_has_fewer_captchas_than_the_plan(serve, pool_env,  # noqa: F811
                                                                              substitute, caplog):
    store = open_store(pool_env["url"])
    make_pool(store, substitute, "tiny")  # 8 captchas
    create_study(store, "shrunk", [Arm("tiny", 4)])
    study = store.get(study_key("shrunk")).replace(b'"count": 4', b'"count": 9')  # written before the check
    store.put(study_key("shrunk"), study)
    service = serve()
    with caplog.at_level(logging.ERROR, logger="farm.service.study_page"):
        refused = requests.post(f"{service.url}/study/shrunk", allow_redirects=False, timeout=30)
    assert refused.status_code == 503 and "cannot start right now" in refused.text
    assert any("tiny" in r.getMessage() and "farm pool refill" in r.getMessage() for r in caplog.records)
    assert not service.app.state.redis.keys("farm:study:shrunk:*")


def test_an_answer_to_a_pool_deleted_meanwhile_gets_a_page_not_a_500_and_records_nothing(serve, pool_env):
    store = open_store(pool_env["url"])
    create_study(store, "s", [Arm("p", STEPS)], replace=True)
    person = Participant(serve(), store, pool_env["bucket"])
    for key in store.list("pools/p/"):  # what `farm pool delete p` does
        store.delete(key)
    before = person.stored()
    other = serve()  # another service process (or this one restarted): it never read pool p
    answered = requests.post(person.url.replace(person.service.url, other.url), allow_redirects=False, timeout=30,
                             data={"step": "0", "answer": "AB12", "client_ms": "900"})
    assert answered.status_code == 503 and "try again later" in answered.text
    assert person.stored() == before and person.step() == 0
