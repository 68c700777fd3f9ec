"""The captcha service: an HTTP API that hands platforms captchas and checks answers, plus the study pages.

    GET  /v1/captcha?pool=NAME[&image=inline]  -> {id, pool, image_url | image, expires_at, ttl_seconds}
    GET  /v1/captcha/<id>.png                  -> the image, for the user's browser (no key: the id is the secret)
    POST /v1/verify  {"id", "answer"}          -> {"id", "result": "pass" | "fail"}; a captcha verifies once
    POST /v1/answers {"answers": [...]}        -> what `farm answers ingest` reports, for flagged users' answers
    GET  /docs (OpenAPI), /metrics (Prometheus), /healthz; /study/<study> (farm.service.study_page)

Platforms never see a pool's captcha ids or answers: the id they get is a ticket kept in Redis
(farm.service.state), the image comes through the service, and answers stay in the pool
client's memory. Endpoints are plain functions run in the server's thread pool: the store
(boto3) and Redis clients they call block.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, Literal

import redis as redis_lib
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm import __version__
from farm.storage.answers import Limits, Rejection, ingest
from farm.ops.client import Drawn, PoolClient
from farm.storage.config import secret
from farm.exceptions import ExpiredTicketError, PoolError, StoreError, UnknownTicketError, UsedTicketError
from farm.core.charset import MAX_ANSWER_CHARS
from farm.storage.layout import check_pool_name, manifest_key
from farm.service.metrics import ServiceMetrics
from farm.service.settings import ServiceSettings, redact
from farm.service.state import TICKET_CHARS, CaptchaState
from farm.service.study_page import study_router
from farm.storage.store import open_store

__all__ = ["create_app", "ApiError", "BODY_LIMIT_BYTES", "ANSWERS_LIMIT_BYTES"]

log = logging.getLogger(__name__)

BODY_LIMIT_BYTES = 8 * 1024  # a verify is ~100 bytes; a study answer form less
ANSWERS_LIMIT_BYTES = 1024 * 1024  # ~9,000 answer records a request: send more as several requests
ANSWERS_MAX_RECORDS = 10_000
# What the service hands farm.storage.answers.ingest is no longer the body: an id becomes pool and captcha_id
# (~30% larger), numbers are written again. The body limit is the one a platform sees; ingest's own byte
# limit must never refuse what passed it. Records over the line limit are rejected before ingest, so the
# lines it gets can never add up to more than this.
ANSWER_LIMITS = Limits(max_records=ANSWERS_MAX_RECORDS,
                       max_bytes=ANSWERS_MAX_RECORDS * (Limits.max_line_bytes + 1))
DRAW_TRIES = 8  # draws that find a captcha held by another draw before one is served again anyway
ANONYMOUS = "default"  # the platform label when FARM_API_KEYS is unset


class ApiError(Exception):
    """An error answered as {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ErrorBody(BaseModel):
    error: str = Field(description="What is wrong with the request, naming the field or the id.")


class Captcha(BaseModel):
    id: str = Field(description="Send it back with the user's answer to POST /v1/verify; good for one verify.")
    pool: str
    image_url: str | None = Field(None, description="Where the user's browser fetches the PNG (image=url).")
    image: str | None = Field(None, description="The PNG as a data: URI (image=inline).")
    expires_at: str = Field(description="ISO 8601 time after which a verify is refused.")
    ttl_seconds: int


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": "x" * TICKET_CHARS,
                                                                               "answer": "7KQ2"}]})
    id: str = Field(min_length=1, max_length=128, description="The id GET /v1/captcha returned.")
    answer: str = Field(max_length=MAX_ANSWER_CHARS, description="What the user typed.")


class VerifyResult(BaseModel):
    id: str
    result: Literal["pass", "fail"]


class AnswersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"answers": [
        {"id": "x" * TICKET_CHARS, "answer": "7KQ2", "risk": "attacker", "time": "2026-11-23T10:00:00Z"}]}]})
    answers: list[Any] = Field(
        min_length=1, max_length=ANSWERS_MAX_RECORDS,
        description="Records {id, answer, risk, time}: id as GET /v1/captcha gave it (within a day of its verify), "
                    "risk one of attacker, suspicious, human, time ISO 8601 with a timezone. Each record is "
                    "checked on its own, as `farm answers ingest` checks a line.")


class RejectedRecord(BaseModel):
    record: int = Field(description="1-based position in `answers`.")
    reason: str


class AnswersReport(BaseModel):
    accepted: int
    added: int = Field(description="Records new to the store (0 when the same records came before).")
    duplicate: bool
    batch: str | None
    rejected: list[RejectedRecord]
    unreadable: list[RejectedRecord] = Field(description="Accepted records whose answer is no text of the pool's "
                                             "alphabet and length: kept as the bot's failures, never learned.")


def create_app(settings: ServiceSettings, metrics: ServiceMetrics | None = None) -> FastAPI:
    """The service's ASGI app on a store and a Redis; `metrics` on a fresh registry unless given."""
    store = open_store(settings.store)
    client = PoolClient(store, max_age=settings.max_age)
    redis = redis_lib.Redis.from_url(settings.redis, socket_timeout=5, socket_connect_timeout=5,
                                     health_check_interval=30)
    hold = int(settings.ttl + settings.served_flush + settings.max_age)  # until every process has read the mark
    state = CaptchaState(redis, secret(store), settings.ttl, settings.answer_window, hold)
    metrics = metrics or ServiceMetrics()
    keys = dict(settings.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        flusher = threading.Thread(target=_flush_served, args=(state, client, settings.served_flush, stop),
                                   name="served-marks", daemon=True)
        flusher.start()
        log.info("captcha service: store %s, state %s, captchas live %d s, %s", store.url, redact(settings.redis),
                 settings.ttl, f"platforms {', '.join(sorted(keys))}" if keys else "no API keys")
        if not keys:
            log.warning("FARM_API_KEYS is not set: the API is open to anyone who reaches it; set "
                        "FARM_API_KEYS=platform=key,... or keep the service behind your own network")
        try:
            yield
        finally:
            stop.set()
            flusher.join(timeout=30)
            redis.close()

    app = FastAPI(
        title="captchafarm service", version=__version__, lifespan=lifespan,
        description="Adversarial text captchas for platforms: draw one, show its image, verify the answer once. "
                    "Send your platform's key in X-API-Key when the service has keys (FARM_API_KEYS).")
    app.state.store, app.state.client, app.state.redis, app.state.captchas = store, client, redis, state
    app.state.metrics, app.state.settings = metrics, settings
    app.add_middleware(BodyLimit, limits={"/v1/answers": ANSWERS_LIMIT_BYTES}, default=BODY_LIMIT_BYTES)
    app.add_middleware(Timing, metrics=metrics)
    _add_error_handlers(app)

    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="Your platform's key, as FARM_API_KEYS gives it (when the service has keys).")

    def platform(key: str | None = Security(api_key)) -> str:
        """The platform whose key came with the request; every configured key is compared, in constant time."""
        if not keys:
            return ANONYMOUS
        if not key:
            raise ApiError(401, "X-API-Key: missing; send your platform's key in the X-API-Key header")
        found = None
        for name, expected in keys.items():  # no early exit: the time taken says nothing of which key matched
            if hmac.compare_digest(key.encode(), expected.encode()):
                found = name
        if found is None:
            raise ApiError(401, "X-API-Key: not a key of this service")
        return found

    errors = {400: {"model": ErrorBody, "description": "Malformed request: the message names the field."},
              401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key."},
              413: {"model": ErrorBody, "description": "Body over the size limit."},
              422: {"model": ErrorBody, "description": "A field of the wrong type or size."},
              503: {"model": ErrorBody, "description": "The store or Redis does not answer."}}

    @app.get("/v1/captcha", response_model=Captcha, response_model_exclude_none=True, tags=["captchas"],
             responses={**errors, 404: {"model": ErrorBody, "description": "No such pool."}})
    def draw(request: Request, pool: str = Query(max_length=128, description="The pool to draw from."),
             image: Literal["url", "inline"] = Query("url", description="url: a link for the browser; inline: "
                                                                         "the PNG in the response as a data: URI."),
             who: str = Depends(platform)) -> dict:
        """Draw a captcha: an id to verify once within ttl_seconds, and its image."""
        try:
            check_pool_name(pool)
            drawn, held = _hold_one(client, state, pool)
            try:
                if image == "inline":
                    png = client.image(pool, drawn.id)
                else:  # a link only to an image the store gives now: issue nothing a browser cannot fetch
                    client.check_image(pool, drawn.id)
                    png = None
                issued = state.issue(who, pool, drawn.id)
            except Exception:  # nothing issued, nothing marked: the captcha is free for the next draw
                if held:
                    state.release(pool, drawn.id)
                raise
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except PoolError as e:
            raise _pool_error(store, pool, e) from None
        metrics.served.labels(pool, who).inc()
        body = {"id": issued.id, "pool": pool, "ttl_seconds": settings.ttl,
                "expires_at": datetime.fromtimestamp(issued.expires, timezone.utc).isoformat().replace("+00:00", "Z")}
        if png is not None:
            body["image"] = "data:image/png;base64," + base64.b64encode(png).decode()
        else:
            body["image_url"] = str(request.url_for("captcha_image", ticket=issued.id))
        return body

    @app.get("/v1/captcha/{ticket}.png", name="captcha_image", tags=["captchas"], response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "The captcha."},
                        404: {"model": ErrorBody, "description": "Unknown, verified or expired id."}})
    def captcha_image(ticket: str) -> Response:
        """The image of a captcha waiting for its verify (for the user's browser: no key needed)."""
        found = state.peek(ticket)
        if found is None:
            raise ApiError(404, "id: no captcha waiting under this id (unknown, verified or expired)")
        pool, cid = found
        return Response(client.image(pool, cid), media_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.post("/v1/verify", response_model=VerifyResult, tags=["captchas"],
              responses={**errors, 404: {"model": ErrorBody, "description": "An id this service did not issue."},
                         409: {"model": ErrorBody, "description": "The id was verified already."},
                         410: {"model": ErrorBody, "description": "The id expired before its verify."}})
    def verify(body: VerifyRequest, who: str = Depends(platform)) -> dict:
        """Check the user's answer; the id is used up whatever the result."""
        try:
            pool, cid = state.consume(who, body.id)
        except UnknownTicketError as e:
            metrics.refused.labels(who, "unknown").inc()
            raise ApiError(404, str(e)) from None
        except ExpiredTicketError as e:
            metrics.refused.labels(who, "expired").inc()
            raise ApiError(410, str(e)) from None
        except UsedTicketError as e:
            metrics.refused.labels(who, "used").inc()
            raise ApiError(409, str(e)) from None
        try:
            verdict = client.check(pool, cid, body.answer)
        except PoolError as e:  # the pool was deleted since the draw
            raise _pool_error(store, pool, e) from None
        result = "pass" if verdict.ok else "fail"
        metrics.verified.labels(pool, who, result).inc()
        return {"id": body.id, "result": result}

    @app.post("/v1/answers", response_model=AnswersReport, tags=["answers"], responses=errors)
    def answers(body: AnswersRequest, who: str = Depends(platform)) -> dict:
        """Report what users your risk system flags typed; stored as an answer batch for fine-tuning."""
        report = _ingest(store, state, who, body.answers)
        metrics.answers.labels(who, "accepted").inc(report["accepted"])
        metrics.answers.labels(who, "rejected").inc(len(report["rejected"]))
        return report

    @app.get("/metrics", include_in_schema=False)
    def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"], responses={503: {"model": ErrorBody}})
    def healthz() -> dict:
        """Ready when Redis answers."""
        redis.ping()
        return {"status": "ok"}

    app.include_router(study_router(app))
    return app


def _hold_one(client: PoolClient, state: CaptchaState, pool: str) -> tuple[Drawn, bool]:
    """A captcha of `pool` that no other draw holds, now held: (drawn, True); (drawn, False) when none was free."""
    for _ in range(DRAW_TRIES):
        drawn = client.draw(pool, fetch=False)
        if state.hold(pool, drawn.id):
            return drawn, True
    # every captcha drawn is out with someone: the pool is nearly dry, serve one again
    log.warning("pool %s: %d draws in a row found captchas out with others; serving one again (refill the pool)",
                pool, DRAW_TRIES)
    return drawn, False


def _pool_error(store, pool: str, error: PoolError) -> ApiError:
    if not store.exists(manifest_key(pool)):
        return ApiError(404, f"pool: {pool!r} is not a pool of this service")
    return ApiError(503, f"pool: {pool!r} has no captcha ready yet; try again when its first shard is generated")


def _ingest(store, state: CaptchaState, platform: str, records: list) -> dict:
    """Records with a service id become store records; all go through farm.storage.answers.ingest's checks."""
    lines, origin, rejected = [], [], []
    for number, record in enumerate(records, start=1):
        try:
            line = _store_line(state, platform, record)
        except (ValueError, UnknownTicketError, ExpiredTicketError) as e:
            rejected.append(Rejection(number, str(e)))
            continue
        lines.append(line)
        origin.append(number)
    report = ingest(store, b"\n".join(lines) + b"\n", ANSWER_LIMITS) if lines else None
    if report is not None:
        rejected += [Rejection(origin[r.line - 1], r.reason) for r in report.rejected]
    unreadable = [{"record": origin[r.line - 1], "reason": r.reason} for r in report.unreadable] if report else []
    return {"accepted": report.accepted if report else 0, "added": report.added if report else 0,
            "duplicate": bool(report and report.duplicate), "batch": report.batch if report else None,
            "rejected": [{"record": r.line, "reason": r.reason} for r in sorted(rejected, key=lambda r: r.line)],
            "unreadable": unreadable}


def _store_line(state: CaptchaState, platform: str, record) -> bytes:
    """A record as the JSON line `farm answers ingest` reads: a service id turned into pool and captcha_id."""
    if isinstance(record, dict) and "id" in record:
        pool, cid = state.resolve(platform, record["id"])
        if "pool" in record or "captcha_id" in record:
            raise ValueError("id: give either id or pool and captcha_id, not both")
        record = {"pool": pool, "captcha_id": cid, **{k: v for k, v in record.items() if k != "id"}}
    try:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as e:  # JSON's \ud800 escapes decode to no text
        raise ValueError(f"not UTF-8 text: {e.object[e.start:e.end]!r} is half of a UTF-16 pair; send text as "
                         f"typed") from None
    if len(line) > ANSWER_LIMITS.max_line_bytes:  # as ingest would say; kept out so the lines fit its byte limit
        raise ValueError(f"record is {len(line)} bytes as a JSON line; the limit is {ANSWER_LIMITS.max_line_bytes}")
    return line


def _flush_served(state: CaptchaState, client: PoolClient, every: float, stop: threading.Event) -> None:
    """Write served marks every `every` seconds, and once more on the way out."""
    while True:
        stopping = stop.wait(every)
        try:
            state.flush_served(client)
        except Exception as e:  # noqa: BLE001 (Redis away: the marks wait in it)
            log.warning("served marks: cannot flush them (%s)", e)
        if stopping:
            return


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error(e.status, e.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        status, message = _validation_message(e.errors())
        return error(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        messages = {404: f"{request.url.path}: no such endpoint; see /docs",
                    405: f"{request.method} {request.url.path}: method not allowed; see /docs"}
        return error(e.status_code, messages.get(e.status_code, str(e.detail)), getattr(e, "headers", None))

    @app.exception_handler(redis_lib.RedisError)
    async def redis_error(request, e):
        log.error("redis: %s", e)
        return error(503, "state: the service's Redis does not answer; try again shortly")

    @app.exception_handler(StoreError)
    async def store_error(request, e):
        log.error("store: %s", e)
        return error(503, "store: the captcha store does not answer; try again shortly")


def _validation_message(errors: list[dict]) -> tuple[int, str]:
    """(status, one message naming every field at fault) for pydantic's errors: 400 unreadable, 422 invalid."""
    status, parts = 422, []
    for e in errors:
        where = ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path", "header")) or "body"
        if e["type"] == "json_invalid":
            status = 400
            parts.append(f"body: not valid JSON ({e.get('ctx', {}).get('error', 'cannot decode')})")
        elif e["type"] == "missing":
            parts.append(f"{where}: missing")
        elif e["type"] in ("model_attributes_type", "dict_type") and where == "body":
            status = 400
            parts.append("body: must be a JSON object sent as Content-Type: application/json")
        elif e["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            parts.append(f"{where}: {e['msg'][:1].lower()}{e['msg'][1:]}")
    return status, "; ".join(parts)


class BodyLimit:
    """Refuse request bodies over a limit with 413, before they are read whole (by header or by counting)."""

    def __init__(self, app, limits: dict[str, int], default: int):
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _too_large(send, scope["path"], limit)
        received, over, started = 0, False, False

        async def counted():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def watched(message):
            nonlocal started
            if over:  # the app answered a body it could not finish reading: our answer instead
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            pass
        if over and not started:
            await _too_large(send, scope["path"], limit)


class _TooLarge(Exception):
    pass


async def _too_large(send, path: str, limit: int) -> None:
    body = JSONResponse({"error": f"body: over the limit of {limit} bytes for {path}; send smaller requests"},
                        status_code=413)
    await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
    await send({"type": "http.response.body", "body": body.body})


class Timing:
    """farm_service_request_duration_seconds by route template (requests matching no route are not timed)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path and path != "/metrics":
                self.metrics.request_duration.labels(path).observe(time.perf_counter() - started)
