"""The admin HTTP server: a JSON API over the same library functions as the CLI, and the Webhooks page.

Every route but ``/login``, its ``/static/`` files and ``/healthz`` needs the admin token when one is
configured: as ``Authorization: Bearer <token>``, or as the session cookie the login form sets (then
state-changing calls must also carry ``X-Requested-With``, which other sites cannot send). Errors are
``{"error": "<one line>"}`` with the status the error's class calls for; responses never contain a secret
except the one just generated for a new webhook or a rotation. Every response forbids framing and carries a
Content-Security-Policy that lets the page run only the app's own script and styles.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import Engine

from assethooks.clock import utc_now
from assethooks.durations import parse_duration
from assethooks.errors import (
    UNEXPECTED,
    AssetHooksError,
    InvalidInputError,
    InvalidWebhookError,
    NotFoundError,
    codes_for,
)
from assethooks.operator import dead_letters as drain
from assethooks.operator.deliveries import (
    LogFilters,
    attempts_to_retry,
    plain_attempt,
    resend_failed,
    send_test_delivery,
)
from assethooks.operator.health import health, health_json
from assethooks.operator.status import service_status
from assethooks.operator.webhooks import (
    Saved,
    check_generated,
    create_webhook,
    generate_secret,
    update_webhook,
)
from assethooks.settings import Settings
from assethooks.store.dead_letters import DeadLetterStatus
from assethooks.store.delivery_log import LoggedAttempt, get_attempt, purge_attempts, query_attempts
from assethooks.store.webhooks import WebhookStore
from assethooks.web.openapi import openapi_document
from assethooks.web.throttle import LoginThrottle, client_key
from schemas.events import EVENT_GROUPS
from schemas.webhooks import MAX_WEBHOOK_ID, WebhookSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_COOKIE = "assethooks_session"
MAX_ID = 2**63 - 1
MAX_LIMIT = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEBHOOK_BODY = (*WebhookSpec.model_fields, "generate_secret", "generate_key")
GENERATE_FIELDS = ("generate_secret", "generate_key")
LOG_FILTERS = ("webhook_id", "event", "asset", "status", "since", "until")
DLQ_FILTERS = ("webhook_id", "event", "kind", "reason", "since", "until")
# The page and its sign-in form load their script and styles from here; nothing inline, nothing remote.
STATIC_FILES = {"admin.js": "text/javascript", "admin.css": "text/css", "login.css": "text/css"}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it: no clickjacking of buttons
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Admin:
    """What the handlers share."""

    settings: Settings
    engine: Engine
    webhooks: WebhookStore
    throttle: LoginThrottle  # wrong tokens, from the sign-in form and as bearer tokens alike


ADMIN = web.AppKey("admin", Admin)


def session_value(token: str) -> str:
    """The session cookie for ``token``: derived from it, so the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"assethooks admin session", hashlib.sha256).hexdigest()


def _token(request: web.Request) -> str | None:
    secret = request.app[ADMIN].settings.admin_token
    return None if secret is None else secret.get_secret_value()


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # header bytes that are not UTF-8 stay comparable


def _same_site(request: web.Request) -> bool:
    """True for requests a browser only sends from our own page: reads, or writes carrying a header that
    another site cannot add without our consent."""
    return request.method in ("GET", "HEAD") or "X-Requested-With" in request.headers


def _bearer(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def _authorised(request: web.Request, token: str) -> bool:
    given = _bearer(request)
    if given is not None:
        return hmac.compare_digest(_bytes(given), _bytes(token))
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(_bytes(cookie), _bytes(session_value(token))) and _same_site(request)


def _too_many(seconds: int) -> web.Response:
    message = f"too many wrong admin tokens from this address; try again in {seconds} s"
    return _error(429, message, {"Retry-After": str(seconds)})


def _loopback_host(request: web.Request) -> bool:
    """True when the request names a loopback host (not a DNS name rebound to 127.0.0.1)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return host.lower() in ("localhost", "127.0.0.1", "[::1]")


def _public(path: str) -> bool:
    """The paths served without the token: the sign-in form and what it loads, and the health check."""
    return path in ("/login", "/healthz") or path.startswith("/static/")


async def _add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, and errors as one-line JSON answers."""
    token = _token(request)
    if token is None:  # loopback only: still refuse other sites' pages and rebound DNS names
        if not (_loopback_host(request) and _same_site(request)):
            return _error(403, "requests must come from this server's own page or carry X-Requested-With")
    elif not _public(request.path):
        # Only bearer tokens are throttled: they are guesses; a session cookie is a 256-bit HMAC that
        # cannot be guessed, and a stale one (after a token change) must not lock its user out.
        throttle, client = request.app[ADMIN].throttle, client_key(request.remote)
        guessing = _bearer(request) is not None
        if guessing and (wait := throttle.retry_after(client)):
            return _too_many(wait)
        if not _authorised(request, token):
            if guessing:
                throttle.failed(client)
            if request.path == "/" and request.method == "GET":
                raise web.HTTPFound("/login")
            return _error(401, "missing or wrong admin token", {"WWW-Authenticate": "Bearer"})
        if guessing:
            throttle.succeeded(client)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except AssetHooksError as exc:
        status = codes_for(exc).http_status
        if status == UNEXPECTED.http_status:
            log.exception("admin API: %s %s failed", request.method, request.path)
        return _error(status, str(exc))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


# -- reading requests ----------------------------------------------------------------------------------


def _id(request: web.Request, name: str = "id", *, high: int = MAX_ID) -> int:
    raw = request.match_info[name]  # the route admits digits only
    if len(raw) > len(str(high)) or int(raw) > high:
        raise NotFoundError(f"no such id: {raw[:20]}")
    return int(raw)


def _webhook_id(request: web.Request) -> int:
    return _id(request, high=MAX_WEBHOOK_ID)


def _int(value: str | None, name: str, *, low: int = 0, high: int = MAX_ID) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be between {low} and {high}")
    return number


async def _body(request: web.Request, allowed: Collection[str] | None = None) -> dict[str, Any]:
    """The JSON object of a request; with ``allowed``, a 400 naming the first other key."""
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, LookupError, RecursionError):  # not JSON, an unknown charset, nested too deep
        raise InvalidInputError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    unknown = [] if allowed is None else [name for name in body if name not in allowed]
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]!r}")
    return body


def _ids(body: dict[str, Any]) -> list[int]:
    ids = body.get("ids", [])
    if not isinstance(ids, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_ID for item in ids
    ):
        raise InvalidInputError("ids must be a list of whole numbers")
    return ids


def _strings(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The filters of a body or query: text values, ``webhook_id`` a number."""
    chosen: dict[str, Any] = {}
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            continue
        if name == "webhook_id":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise InvalidInputError(f"{name} must be a whole number")
            chosen[name] = _int(str(value), name, high=MAX_WEBHOOK_ID)
        elif isinstance(value, str) and value.isprintable():
            chosen[name] = value
        else:
            raise InvalidInputError(f"{name} must be printable text")
    return chosen


def _run(function: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
    """Run a blocking library call (SQL store, Kafka) off the event loop."""
    return asyncio.to_thread(function, *args, **kwargs)


# -- webhooks ------------------------------------------------------------------------------------------


def _webhook_fields(
    body: dict[str, Any], *, creating: bool, scheme: str = "seed"
) -> tuple[dict[str, Any], str | None]:
    """The webhook fields of a request body, and the secret generated for it if asked to (a generated
    Ed25519 private key is not returned: the webhook's ``public_key`` is what the caller gets)."""
    fields = dict(body)
    generate, generate_key = fields.pop("generate_secret", False), fields.pop("generate_key", False)
    if not isinstance(generate, bool) or not isinstance(generate_key, bool):
        raise InvalidWebhookError("generate_secret and generate_key must be true or false")
    if fields.get("events") == "all":
        fields["events"] = None
    elif creating and "events" not in fields:
        raise InvalidWebhookError('choose events: a list of event names, or "all"')
    generated = None
    if generate or generate_key:
        if fields.get("secret") is not None:
            raise InvalidWebhookError("use either secret or generate_secret/generate_key, not both")
        given = fields.get("signature", scheme)
        chosen = given if isinstance(given, str) else scheme
        check_generated(chosen, secret=generate, key=generate_key, names=GENERATE_FIELDS)
        fields["secret"] = generate_secret(chosen)
        generated = None if generate_key else fields["secret"]
    return fields, generated


def _saved(saved: Saved, generated: str | None, status: int = 200) -> web.Response:
    answer: dict[str, Any] = {"webhook": saved.webhook.masked(), "warnings": saved.warnings}
    if generated is not None:
        answer["secret"] = generated  # shown once, as `webhooks create --generate-secret` does
    return web.json_response(answer, status=status)


async def list_webhooks(request: web.Request) -> web.Response:
    found = await _run(request.app[ADMIN].webhooks.list)
    return web.json_response({"webhooks": [webhook.masked() for webhook in found]})


async def create(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    fields, generated = _webhook_fields(await _body(request, WEBHOOK_BODY), creating=True)
    saved = await _run(create_webhook, admin.settings, admin.webhooks, fields)
    return _saved(saved, generated, 201)


async def show(request: web.Request) -> web.Response:
    webhook = await _run(request.app[ADMIN].webhooks.get, _webhook_id(request))
    return web.json_response({"webhook": webhook.masked()})


async def rotate_secret(request: web.Request) -> web.Response:
    """Replace the secret (given, or generated and shown once) or the Ed25519 key pair (given, or generated:
    its public key is shown); the old one signs beside it for ``grace``."""
    admin = request.app[ADMIN]
    webhook_id = _webhook_id(request)
    body = await _body(request, ("secret", *GENERATE_FIELDS, "grace"))
    webhook = await _run(admin.webhooks.get, webhook_id)
    secret, generate, grace = body.get("secret"), body.get("generate_secret", False), body.get("grace", "24h")
    generate_key = body.get("generate_key", False)
    if not isinstance(generate, bool) or not isinstance(generate_key, bool) or not isinstance(grace, str):
        raise InvalidWebhookError(
            "generate_secret and generate_key must be true or false, grace a duration such as 24h"
        )
    check_generated(webhook.signature, secret=generate, key=generate_key, names=GENERATE_FIELDS)
    generate = generate or generate_key
    if (secret is None) == (not generate):
        raise InvalidWebhookError("give either secret or generate_secret: true (generate_key: true)")
    if secret is not None and not isinstance(secret, str):
        raise InvalidWebhookError("secret must be text")
    chosen = generate_secret(webhook.signature) if generate else secret
    seconds = parse_duration(grace)
    rotated = await _run(admin.webhooks.rotate_secret, webhook_id, chosen, timedelta(seconds=seconds))
    answer: dict[str, Any] = {
        "webhook": rotated.masked(),
        "previous_secret_until": None
        if rotated.previous_secret_until is None
        else rotated.previous_secret_until.isoformat(timespec="seconds"),
    }
    if generate and not generate_key:
        answer["secret"] = chosen  # shown once
    return web.json_response(answer)


async def webhook_health(request: web.Request) -> web.Response:
    """One webhook's health, with its attempts per hour over the last 24 hours."""
    admin = request.app[ADMIN]
    webhook_id = _webhook_id(request)
    await _run(admin.webhooks.get, webhook_id)  # 404 for an unknown webhook
    found = await _run(health, admin.engine, [webhook_id], hours=True)
    return web.json_response({"health": health_json(found[0])})


async def all_health(request: web.Request) -> web.Response:
    """Every webhook's health (without the hourly counts)."""
    admin = request.app[ADMIN]
    found = await _run(health, admin.engine)
    return web.json_response({"health": [health_json(each) for each in found]})


async def update(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    webhook_id = _webhook_id(request)
    current = await _run(admin.webhooks.get, webhook_id)
    body = await _body(request, WEBHOOK_BODY)
    fields, generated = _webhook_fields(body, creating=False, scheme=current.signature)
    saved = await _run(update_webhook, admin.settings, admin.webhooks, webhook_id, fields)
    return _saved(saved, generated)


async def delete(request: web.Request) -> web.Response:
    webhook = await _run(request.app[ADMIN].webhooks.delete, _webhook_id(request))
    return web.json_response({"deleted": webhook.masked()})


async def enable(request: web.Request) -> web.Response:
    webhook = await _run(request.app[ADMIN].webhooks.update, _webhook_id(request), active=True)
    return web.json_response({"webhook": webhook.masked()})


async def disable(request: web.Request) -> web.Response:
    webhook = await _run(request.app[ADMIN].webhooks.update, _webhook_id(request), active=False)
    return web.json_response({"webhook": webhook.masked()})


async def test(request: web.Request) -> web.Response:
    """Seed §7: send the test payload; the answer is data (200) whatever the endpoint said."""
    admin = request.app[ADMIN]
    webhook = await _run(admin.webhooks.get, _webhook_id(request))
    sent = await send_test_delivery(admin.settings, admin.engine, webhook, utc_now())
    result = sent.result
    return web.json_response(
        {
            "ok": result.ok,
            "status_code": result.status_code,
            "duration_ms": round(result.duration_ms, 1),
            "error": None if result.failure is None else str(result.failure),
            "response_body": result.response_body,
            "delivery_id": sent.entry.delivery_id,
        }
    )


async def events(_request: web.Request) -> web.Response:
    groups = [
        {"group": name, "events": [event.value for event in names]} for name, names in EVENT_GROUPS.items()
    ]
    return web.json_response({"groups": groups})


# -- delivery logs -------------------------------------------------------------------------------------


def _log_filters(values: dict[str, Any]) -> LogFilters:
    chosen = _strings(values, LOG_FILTERS)
    return LogFilters(**chosen)


def _cursor(attempt: LoggedAttempt) -> str:
    """An opaque position in the log's order (newest first): just after ``attempt``."""
    plain = f"{attempt.created_at.isoformat()}|{attempt.id}"
    return base64.urlsafe_b64encode(plain.encode()).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        plain = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, log_id = plain.partition("|")
        given = datetime.fromisoformat(moment)
        after = given.astimezone(UTC), int(log_id)  # the store's form, and a time it can hold
    except (ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        raise InvalidInputError("cursor is not one this API gave") from None
    if given.tzinfo is None or not 0 <= after[1] <= MAX_ID:
        raise InvalidInputError("cursor is not one this API gave")
    return after


async def logs(request: web.Request) -> web.Response:
    """A page of attempts, newest first; ``next_cursor`` (when more match) asks for the next page."""
    query = dict(request.query)
    limit = _int(query.pop("limit", None), "limit", low=1, high=MAX_LIMIT) or 50
    after = _after(query.pop("cursor", None))
    filters = _log_filters(query)
    chosen = replace(filters.query(limit + 1), after=after)
    found = await _run(query_attempts, request.app[ADMIN].engine, chosen)
    page = found[:limit]
    return web.json_response(
        {
            "attempts": [plain_attempt(attempt) for attempt in page],
            "next_cursor": _cursor(page[-1]) if len(found) > limit else None,
        }
    )


async def purge_logs(request: web.Request) -> web.Response:
    """Delete the attempts older than ``older_than`` (default the log retention), as ``logs purge``."""
    admin = request.app[ADMIN]
    body = await _body(request, ("older_than",))
    older_than = body.get("older_than")
    if older_than is not None and not isinstance(older_than, str):
        raise InvalidInputError("older_than must be a duration such as 30d")
    age = admin.settings.log_retention if older_than is None else parse_duration(older_than)
    cutoff = utc_now() - timedelta(seconds=age)
    purged = await _run(purge_attempts, admin.engine, cutoff)
    return web.json_response({"purged": purged, "cutoff": cutoff.isoformat(timespec="seconds")})


async def log_entry(request: web.Request) -> web.Response:
    attempt = await _run(get_attempt, request.app[ADMIN].engine, _id(request))
    return web.json_response({"attempt": plain_attempt(attempt)})


async def retry(request: web.Request) -> web.Response:
    """Re-send failed deliveries: ``{"ids": [...]}`` or filters, as ``logs retry``."""
    admin = request.app[ADMIN]
    body = await _body(request, ("ids", *LOG_FILTERS))
    ids = _ids(body)
    filters = _log_filters(body)

    def resend() -> dict[str, Any]:
        attempts = attempts_to_retry(admin.engine, ids, filters)
        report = resend_failed(admin.settings, admin.engine, attempts, utc_now())
        skipped = [{"log_id": log_id, "reason": reason} for log_id, reason in report.skipped]
        return {"queued": report.queued, "skipped": skipped}

    return web.json_response(await _run(resend))


# -- dead letters --------------------------------------------------------------------------------------


async def dlq(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    query = dict(request.query)
    limit = _int(query.pop("limit", None), "limit", low=1, high=MAX_LIMIT) or 100
    state = query.pop("status", "pending")
    states = [status.value for status in DeadLetterStatus]
    if state not in (*states, "all"):
        raise InvalidInputError(f"status must be {', '.join(states)} or all")
    status = None if state == "all" else DeadLetterStatus(state)
    filters = _strings(query, DLQ_FILTERS)
    entries = await _run(drain.select, admin.settings, admin.engine, [], filters, status=status, limit=limit)
    return web.json_response({"entries": [drain.plain_entry(entry) for entry in entries]})


async def dlq_entry(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]

    def look() -> dict[str, Any]:
        drain.sync(admin.settings, admin.engine)
        return drain.show(admin.settings, admin.engine, _id(request)).plain()

    return web.json_response({"entry": await _run(look)})


async def _chosen_letters(request: web.Request) -> tuple[Admin, list[Any]]:
    admin = request.app[ADMIN]
    body = await _body(request, ("ids", "all", *DLQ_FILTERS))
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise InvalidInputError("all must be true or false")
    ids, filters = _ids(body), _strings(body, DLQ_FILTERS)
    entries = await _run(
        drain.select, admin.settings, admin.engine, ids, filters, everything=everything, required=True
    )
    return admin, entries


async def dlq_replay(request: web.Request) -> web.Response:
    admin, entries = await _chosen_letters(request)
    report = await _run(drain.replay, admin.settings, admin.engine, entries, utc_now())
    return web.json_response({"replayed": report.done, "missing": report.missing})


async def dlq_purge(request: web.Request) -> web.Response:
    admin, entries = await _chosen_letters(request)
    report = await _run(drain.purge, admin.engine, entries, utc_now())
    return web.json_response({"purged": report.done})


# -- status --------------------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    """What ``assethooks status --json`` prints: the groups and their lag, the retry backlog, the pending
    dead letters and the last alerts run."""
    admin = request.app[ADMIN]
    found = await _run(service_status, admin.settings, admin.engine)
    return web.json_response(found.plain())


# -- the page, login and the API description ----------------------------------------------------------


def _static(name: str) -> str:
    return resources.files("assethooks.web").joinpath("static", name).read_text(encoding="utf-8")


async def page(_request: web.Request) -> web.Response:
    return web.Response(text=_static("index.html"), content_type="text/html")


async def login_form(request: web.Request) -> web.Response:
    if _token(request) is None:
        raise web.HTTPFound("/")
    return web.Response(text=_static("login.html"), content_type="text/html")


def _login_form(problem: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    text = _static("login.html").replace("<!--problem-->", f"<p role=alert>{problem}</p>")
    return web.Response(text=text, content_type="text/html", status=status, headers=headers)


async def login(request: web.Request) -> web.Response:
    token = _token(request)
    if token is None:
        raise web.HTTPFound("/")
    throttle, client = request.app[ADMIN].throttle, client_key(request.remote)
    wait = throttle.retry_after(client)
    if wait:
        message = f"Too many wrong tokens from this address; try again in {wait} s."
        return _login_form(message, 429, {"Retry-After": str(wait)})
    try:
        form = await request.post()
    except (ValueError, LookupError):
        form = None
    given = None if form is None else form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(_bytes(given), _bytes(token)):
        throttle.failed(client)
        return _login_form("Wrong token.", 401)
    throttle.succeeded(client)
    answer = web.HTTPFound("/")
    answer.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="Strict", path="/")
    raise answer


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(text=_static(name), content_type=STATIC_FILES[name], charset="utf-8")


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app(
    settings: Settings, engine: Engine, webhooks: WebhookStore, throttle: LoginThrottle | None = None
) -> web.Application:
    """The admin application; ``throttle`` defaults to one with the settings' delays."""
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    throttle = throttle or LoginThrottle(
        first_delay=settings.admin_login_delay, max_delay=settings.admin_login_max_delay
    )
    app[ADMIN] = Admin(settings, engine, webhooks, throttle)
    app.on_response_prepare.append(_add_security_headers)
    one = r"/{id:\d+}"
    app.add_routes(
        [
            web.get("/", page),
            web.get("/login", login_form),
            web.post("/login", login),
            web.get("/healthz", healthz),
            web.get("/static/{name}", static_file),
            web.get("/openapi.json", openapi),
            web.get("/api/events", events),
            web.get("/api/webhooks", list_webhooks),
            web.post("/api/webhooks", create),
            web.get("/api/webhooks" + one, show),
            web.patch("/api/webhooks" + one, update),
            web.delete("/api/webhooks" + one, delete),
            web.post("/api/webhooks" + one + "/enable", enable),
            web.post("/api/webhooks" + one + "/disable", disable),
            web.post("/api/webhooks" + one + "/test", test),
            web.get("/api/webhooks" + one + "/health", webhook_health),
            web.post("/api/webhooks" + one + "/rotate-secret", rotate_secret),
            web.get("/api/health", all_health),
            web.get("/api/logs", logs),
            web.get("/api/logs" + one, log_entry),
            web.post("/api/logs/retry", retry),
            web.post("/api/logs/purge", purge_logs),
            web.get("/api/dlq", dlq),
            web.get("/api/dlq" + one, dlq_entry),
            web.post("/api/dlq/replay", dlq_replay),
            web.post("/api/dlq/purge", dlq_purge),
            web.get("/api/status", status),
        ]
    )
    return app
