"""The study page: a participant reads a study's captchas one by one; each answer and its time is recorded.

    GET  /study/<study>                          what the study asks, a Start button
    POST /study/<study>                          a new participant (a random id) with a shuffled plan -> 303
    GET  /study/<study>/<participant>            the current captcha and a text box; the thanks page at the end
    GET  /study/<study>/<participant>/<step>.png the current captcha's image
    POST /study/<study>/<participant>            the typed answer of a step (form: step, answer, client_ms, skip)
                                                 -> 303; a field no browser sends -> 400 naming it

A participant's session lives in Redis (farm:study:<study>:<participant>: plan, step, when each
step was shown), so any service process can serve any page; each answer is written to the store
(farm.ops.studies.write_response) where `farm study report` reads it. The time taken is measured in
the browser from the image's load to the submit (network excluded), and on the server from the
page to the answer when the browser sends none. No page names a captcha id or an answer, and a
participant is never told whether they were right: a study page must not be an oracle for bots.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from farm.exceptions import PoolError, StudyError
from farm.core.charset import MAX_ANSWER_CHARS
from farm.ops.studies import Study, check_study_name, read_study, write_response

__all__ = ["study_router", "StudySessions", "read_answer_form", "SESSION_SECONDS", "MAX_CLIENT_MS"]

log = logging.getLogger(__name__)

SESSION_SECONDS = 2 * 3600  # a participant who leaves for longer starts again
MAX_CLIENT_MS = SESSION_SECONDS * 1000  # no page is open longer than its session: a larger time is no browser's
STUDY_CACHE_SECONDS = 30  # a study's definition is read from the store at most this often per process
_PARTICIPANT = re.compile(r"^[0-9a-f]{32}$")
_PREFIX = "farm:study:"

# move to the next step only from the step the answer is for: a double submit or a stale tab records nothing
_ADVANCE = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_templates = Environment(loader=PackageLoader("farm.service", "templates"), autoescape=select_autoescape(["html"]))


class StudySessions:
    """Participants' progress in Redis."""

    def __init__(self, redis):
        self.redis = redis
        self._advance = redis.register_script(_ADVANCE)

    @staticmethod
    def key(study: str, participant: str) -> str:
        return f"{_PREFIX}{study}:{participant}"

    def start(self, study: Study, client) -> str:
        """A new participant: `count` different captchas of each pool, shuffled together. Returns their id."""
        plan = []
        for arm in study.arms:
            chosen = client.draw_distinct(arm.pool, arm.count)
            if len(chosen) < arm.count:  # the pool shrank or was replaced since the study was made
                raise PoolError(f"pool: {arm.pool!r} holds {len(chosen)} captchas and study {study.name!r} shows "
                                f"each participant {arm.count} different ones; grow it (`farm pool refill --pool "
                                f"{arm.pool} --min {arm.count}`) or lower the count (`farm study create --replace`)")
            plan += [{"pool": arm.pool, "captcha_id": cid} for cid in chosen]
        secrets.SystemRandom().shuffle(plan)  # unpredictable order: no pool always comes first (fatigue, learning)
        participant = secrets.token_hex(16)
        key = self.key(study.name, participant)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"plan": json.dumps(plan), "step": 0, "started": time.time()})
            pipe.expire(key, SESSION_SECONDS)
            pipe.execute()
        return participant

    def get(self, study: str, participant: str) -> dict | None:
        """{plan, step, shown: {step: time}} of a participant, None when unknown or expired."""
        raw = self.redis.hgetall(self.key(study, participant))
        if not raw:
            return None
        raw = {k.decode(): v.decode() for k, v in raw.items()}
        shown = {int(k.removeprefix("shown:")): float(v) for k, v in raw.items() if k.startswith("shown:")}
        return {"plan": json.loads(raw["plan"]), "step": int(raw["step"]), "shown": shown}

    def shown(self, study: str, participant: str, step: int) -> float:
        """When `step` was first shown (a reload keeps the first time)."""
        key = self.key(study, participant)
        self.redis.hsetnx(key, f"shown:{step}", time.time())
        return float(self.redis.hget(key, f"shown:{step}"))

    def advance(self, study: str, participant: str, step: int) -> bool:
        return bool(self._advance(keys=[self.key(study, participant)], args=[step, step + 1, SESSION_SECONDS]))

    def rewind(self, study: str, participant: str, step: int) -> None:
        """Undo an advance whose response could not be stored, so the participant can answer again."""
        self.redis.hset(self.key(study, participant), "step", step)


def whole_number(form: dict, field: str, high: int) -> int | None:
    """A form field as a whole number from 0 to `high` (None when absent or empty).

    ASCII digits only, and no longer than `high` written out: str.isdigit() takes '²' and
    int() takes '١', and int() refuses 5,000 digits with an error of its own.
    """
    value = form.get(field, "")
    if value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(high)) and int(value) <= high):
        raise ValueError(f"{field}: must be a whole number from 0 to {high}")
    return int(value)


def read_answer_form(form: dict, steps: int) -> tuple[int, str, bool, int | None]:
    """(step, typed answer, skipped, browser's milliseconds or None) of an answer post; ValueError naming the field."""
    step = whole_number(form, "step", steps - 1)
    if step is None:
        raise ValueError("step: missing; the page sends the step it shows")
    typed = form.get("answer", "")
    if len(typed) > MAX_ANSWER_CHARS:
        raise ValueError(f"answer: at most {MAX_ANSWER_CHARS} characters")
    skipped = "skip" in form
    return step, "" if skipped else typed, skipped, whole_number(form, "client_ms", MAX_CLIENT_MS)


def study_router(app: FastAPI) -> APIRouter:
    """The study pages on the app's store, pool client, Redis and metrics."""
    store, client, metrics = app.state.store, app.state.client, app.state.metrics
    sessions = StudySessions(app.state.redis)
    router = APIRouter(include_in_schema=False)
    cache: dict[str, tuple[float, Study]] = {}

    def study_of(name: str) -> Study:
        check_study_name(name)
        hit = cache.get(name)
        if hit and time.monotonic() - hit[0] < STUDY_CACHE_SECONDS:
            return hit[1]
        study = read_study(store, name)
        cache[name] = (time.monotonic(), study)
        return study

    def page(template: str, status: int = 200, **values) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = _templates.get_template(template).render(nonce=nonce, **values)
        return HTMLResponse(html, status_code=status, headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; "
                                       f"script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'"})

    def missing(message: str, status: int = 404, study: str | None = None) -> HTMLResponse:
        return page("study_error.html", status, message=message, study=study)

    def find(name: str, participant: str | None = None):
        """(study, participant's session or None, None), or (None, None, an error page)."""
        try:
            study = study_of(name)
        except (ValueError, StudyError):
            return None, None, missing("There is no such study.")
        if participant is None:
            return study, None, None
        if not _PARTICIPANT.match(participant):
            return None, None, missing("This link is not a study session.", study=name)
        session = sessions.get(name, participant)
        if session is None:
            return None, None, missing("This session has expired or never existed. You can start again.", 410, name)
        return study, session, None

    @router.get("/study/{name}")
    def intro(name: str):
        study, _, error = find(name)
        return error or page("study_intro.html", study=study)

    @router.post("/study/{name}")
    def start(name: str):
        study, _, error = find(name)
        if error:
            return error
        try:
            participant = sessions.start(study, client)
        except (PoolError, ValueError) as e:  # a pool of the study deleted or emptied since it was created
            log.error("study %s: cannot start a participant: %s", name, e)
            return missing("This study cannot start right now; please try again later.", 503)
        return RedirectResponse(f"/study/{name}/{participant}", status_code=303)

    @router.get("/study/{name}/{participant}")
    def step_page(name: str, participant: str):
        study, session, error = find(name, participant)
        if error:
            return error
        step = session["step"]
        if step >= len(session["plan"]):
            return page("study_done.html", study=study, code=participant[:8])
        sessions.shown(name, participant, step)
        return page("study_step.html", study=study, participant=participant, step=step, total=len(session["plan"]),
                    max_chars=MAX_ANSWER_CHARS)

    @router.get("/study/{name}/{participant}/{step}.png")
    def step_image(name: str, participant: str, step: int):
        _, session, error = find(name, participant)
        if error:
            return error
        if step != session["step"] or step >= len(session["plan"]):  # only the captcha being answered
            return Response(status_code=404)
        shown = session["plan"][step]
        return Response(client.image(shown["pool"], shown["captcha_id"]), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @router.post("/study/{name}/{participant}")
    async def answer(name: str, participant: str, request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                             keep_blank_values=True).items()}
        return await run_in_threadpool(record, name, participant, form)

    def record(name: str, participant: str, form: dict):
        _, session, error = find(name, participant)
        if error:
            return error
        back = f"/study/{name}/{participant}"
        try:
            step, typed, skipped, client_ms = read_answer_form(form, len(session["plan"]))
        except ValueError as e:  # a hand-made post: no browser sends these
            return page("study_error.html", 400, message=f"{e}. Go back to the captcha and answer it again.",
                        back=back)
        if step != session["step"]:
            return RedirectResponse(back, status_code=303)  # a second submit of a step, or a stale tab
        now = time.time()
        server = now - session["shown"].get(step, now)
        # the browser's time when it is plausible (it cannot exceed the server's, which adds the network)
        measured = client_ms / 1000 if client_ms is not None and client_ms / 1000 <= server + 1 else None
        shown = session["plan"][step]
        try:
            correct = bool(typed) and client.check(shown["pool"], shown["captcha_id"], typed).ok
        except PoolError as e:  # the pool was deleted since the plan was drawn: nothing can be judged or recorded
            log.error("study %s: cannot check an answer: %s", name, e)
            return missing("This study cannot go on right now; please try again later.", 503)
        if not sessions.advance(name, participant, step):
            return RedirectResponse(back, status_code=303)
        response = {"study": name, "participant": participant, "step": step, "pool": shown["pool"],
                    "captcha_id": shown["captcha_id"], "answer": typed, "correct": correct, "skipped": skipped,
                    "seconds": round(measured if measured is not None else server, 3),
                    "server_seconds": round(server, 3), "client_seconds": measured,
                    "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            write_response(store, response)
        except Exception:
            sessions.rewind(name, participant, step)
            raise
        metrics.study_answers.labels(name, shown["pool"]).inc()
        return RedirectResponse(back, status_code=303)

    return router
