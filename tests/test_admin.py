"""The admin page and JSON API (`assethooks serve`) as a real process: API calls through a real HTTP
client on SQLite and PostgreSQL, a schemathesis run against /openapi.json, and the page driven in headless
Chromium."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from assethooks.signing import verify_delivery
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import LogEntry, insert_entries
from assethooks.store.webhooks import WebhookStore
from producers.events import EventPublisher
from tests.conftest import TestEnv
from tests.support import ASSETHOOKS, Receiver, cli, free_port, read_topic, service, wait_until

TOKEN = "admin-token-for-tests"
SECRET = "receiver-secret-1234"
HEADER_VALUE = "api-key-value-5678"
T = TypeVar("T")


@dataclass
class Answer:
    status: int
    body: Any
    text: str
    headers: dict[str, str]  # names in lower case


@dataclass
class AdminServer:
    """A running `assethooks serve` and how to call it."""

    url: str
    env: TestEnv

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One HTTP request; the answer whatever its status."""
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), error.headers
        text = raw.decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return Answer(status, parsed, text, {name.lower(): value for name, value in got.items()})


@dataclass
class Raw:
    status: int
    headers: dict[str, str]  # names in lower case
    text: str


def raw_call(
    server: AdminServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    source: str = "127.0.0.1",
) -> Raw:
    """One request from the loopback address ``source``, redirects not followed."""
    connection = http.client.HTTPConnection(
        server.url.removeprefix("http://"), timeout=30, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        got = {name.lower(): value for name, value in response.getheaders()}
        return Raw(response.status, got, response.read().decode())
    finally:
        connection.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            status: int = response.status
            return status == 200
    except OSError:
        return False


@pytest.fixture
def admin(env: TestEnv, store_url: str, tmp_path: Path) -> Iterator[AdminServer]:
    """`assethooks serve` on a fresh store (SQLite, then PostgreSQL), with an admin token."""
    yield from _serve(env.with_(database_url=store_url, admin_token=TOKEN), tmp_path)


@pytest.fixture
def admin_open(env: TestEnv, tmp_path: Path) -> Iterator[AdminServer]:
    """`assethooks serve` without a token (loopback only)."""
    yield from _serve(env, tmp_path)


@pytest.fixture
def admin_sqlite(env: TestEnv, tmp_path: Path) -> Iterator[AdminServer]:
    """`assethooks serve` on the test's SQLite store, with an admin token."""
    yield from _serve(env.with_(admin_token=TOKEN), tmp_path)


@pytest.fixture
def admin_slow_to_forgive(env: TestEnv, tmp_path: Path) -> Iterator[AdminServer]:
    """`assethooks serve` whose throttle makes a client wait an hour after five wrong tokens."""
    yield from _serve(
        env.with_(admin_token=TOKEN, admin_login_delay="1h", admin_login_max_delay="1h"), tmp_path
    )


def _serve(env: TestEnv, tmp_path: Path) -> Iterator[AdminServer]:
    assert cli("db", "upgrade", env=env.values).code == 0
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ASSETHOOKS), "serve", "--port", str(port)],
            env={**os.environ, **env.values},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url) or process.poll() is not None, timeout=30, what="the admin server")
        assert process.poll() is None, log_path.read_text()
        yield AdminServer(url, env)
    finally:
        process.terminate()
        process.wait(30)


def new_webhook(server: AdminServer, url: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "Sync to ERP", "url": url, "events": ["asset.created"], **fields}
    answer = server.call("POST", "/api/webhooks", body)
    assert answer.status == 201, answer.text
    webhook: dict[str, Any] = answer.body["webhook"]
    return webhook


# -- the JSON API --------------------------------------------------------------------------------------


def test_every_api_call_without_the_right_token_gets_401_and_changes_nothing(
    admin: AdminServer, receiver: Receiver
) -> None:
    webhook = new_webhook(admin, receiver.url("/hook"), secret=SECRET)
    before = admin.call("GET", "/api/webhooks").body
    document = admin.call("GET", "/openapi.json").body
    calls = [
        (method.upper(), path.replace("{id}", str(webhook["id"])))
        for path, operations in document["paths"].items()
        for method in operations
    ]
    assert len(calls) >= 15
    body = {"name": "changed", "ids": [1], "all": True, "url": "http://127.0.0.1:1/x", "events": "all"}
    wrong_token = {"Authorization": "Bearer wrong-token", "Content-Type": "application/json"}
    for method, path in calls:
        writes = method in ("POST", "PATCH")
        answer = admin.call(method, path, body if writes else None, token=None)
        assert answer.status == 401, (method, path, answer.text)
        assert answer.body == {"error": "missing or wrong admin token"}
        # wrong tokens come from another address: after five of them its throttle answers 429, and the
        # calls of this test with the right token stay unaffected
        payload = json.dumps(body).encode() if writes else None
        wrong = raw_call(admin, method, path, payload, wrong_token, source="127.0.0.2")
        refusal = json.loads(wrong.text)["error"]
        if wrong.status == 429:
            assert refusal.startswith("too many wrong admin tokens from this address"), wrong.text
        else:
            assert (wrong.status, refusal) == (401, "missing or wrong admin token"), (method, path)
    assert admin.call("GET", "/api/webhooks").body == before
    assert receiver.requests() == []  # the test webhook call sent nothing
    page = admin.call("GET", "/", token=None)
    assert page.status == 200  # the login form, after the redirect
    assert 'action="/login"' in page.text


def test_the_api_gives_the_clis_messages_and_saves_nothing_invalid(admin: AdminServer) -> None:
    bad = [
        ("ftp://example.com/hook", "asset.created"),
        ("https://example.com/hook", "asset.nope"),
        ("http://10.1.2.3/hook", "asset.created"),
    ]
    for url, event in bad:
        answer = admin.call("POST", "/api/webhooks", {"name": "x", "url": url, "events": [event]})
        assert answer.status == 400, answer.text
        from_cli = cli(
            "webhooks", "create", "--name", "x", "--url", url, "--event", event, env=admin.env.values
        )
        assert from_cli.code == 2
        assert from_cli.err.strip() == f"Error: {answer.body['error']}"
    assert admin.call("GET", "/api/webhooks").body == {"webhooks": []}
    assert admin.call(
        "POST", "/api/webhooks", {"name": "x", "url": "https://e.example", "events": "all", "x": 1}
    ).body == {"error": "unknown field 'x'"}
    assert admin.call("POST", "/api/webhooks", "not an object").status == 400
    assert admin.call("GET", "/api/webhooks/999").status == 404
    assert admin.call("GET", "/api/logs?limit=0").body == {"error": "limit must be between 1 and 1000"}


def test_webhooks_through_the_api_and_no_answer_shows_a_secret(
    admin: AdminServer, receiver: Receiver
) -> None:
    created = admin.call(
        "POST",
        "/api/webhooks",
        {
            "name": "Zapier",
            "url": receiver.url("/hook"),
            "events": "all",
            "secret": SECRET,
            "headers": {"X-Api-Key": HEADER_VALUE},
        },
    )
    assert created.status == 201
    webhook = created.body["webhook"]
    assert webhook["events"] == "all"
    assert webhook["secret"] == "****"
    assert webhook["headers"] == {"X-Api-Key": "****"}
    assert created.body["warnings"] == [
        "the URL is plain http; use https so payloads and signatures travel encrypted."
    ]
    one = f"/api/webhooks/{webhook['id']}"
    changed = admin.call("PATCH", one, {"events": ["asset.created", "alert.low_stock"], "active": False})
    assert changed.body["webhook"]["events"] == ["asset.created", "alert.low_stock"]
    assert changed.body["webhook"]["active"] is False
    assert admin.call("POST", one + "/enable").body["webhook"]["active"] is True

    tested = admin.call("POST", one + "/test")
    assert tested.status == 200
    assert tested.body["ok"] is True
    assert tested.body["status_code"] == 200
    received = receiver.wait_for(1)[0]
    assert received.header("X-Asset-Webhook-Event") == "webhook.test"
    assert received.header("X-Api-Key") == HEADER_VALUE
    assert (
        verify_delivery(SECRET, received.body, dict(received.headers), now=time.time(), tolerance=60) is None
    )

    logged = admin.call("GET", f"/api/logs?webhook_id={webhook['id']}").body["attempts"]
    assert [(entry["event"], entry["status_code"]) for entry in logged] == [("webhook.test", 200)]
    assert (
        admin.call("GET", f"/api/logs/{logged[0]['id']}").body["attempt"]["delivery_id"]
        == (tested.body["delivery_id"])
    )
    generated = admin.call(
        "POST",
        "/api/webhooks",
        {"name": "G", "url": receiver.url(), "events": "all", "generate_secret": True},
    )
    assert len(generated.body["secret"]) >= 32  # shown once, to hand on

    answers = [created, changed, tested]
    answers += [
        admin.call("GET", path)
        for path in ("/api/webhooks", one, "/api/logs", f"/api/logs/{logged[0]['id']}")
    ]
    for answer in answers:
        assert SECRET not in answer.text
        assert HEADER_VALUE not in answer.text
        assert generated.body["secret"] not in answer.text
    assert generated.body["secret"] not in admin.call("GET", "/api/webhooks").text
    assert admin.call("DELETE", one).status == 200
    assert admin.call("GET", one).status == 404


LISBON_LAPTOPS = "data.location == 'Lisbon' && asset.category == 'Laptops'"


def test_a_filter_and_a_rate_limit_through_the_api_bad_ones_refused_in_one_line(admin: AdminServer) -> None:
    body = {"name": "Lisbon", "url": "https://erp.example.com/h", "events": "all"}
    for field, value, message in [
        ("filter", "data.location == ", "filter is not a valid JMESPath expression: "),
        ("filter", 5, "filter: Input should be a valid string"),
        ("rate_limit", "fast", "rate_limit: rate limit 'fast' is not a rate such as 20/s or 50/m"),
    ]:
        refused = admin.call("POST", "/api/webhooks", {**body, field: value})
        assert refused.status == 400, refused.text
        assert message in refused.body["error"]
        assert "\n" not in refused.body["error"]
    assert admin.call("GET", "/api/webhooks").body == {"webhooks": []}

    created = admin.call("POST", "/api/webhooks", {**body, "filter": LISBON_LAPTOPS, "rate_limit": "20/s"})
    assert created.status == 201, created.text
    webhook = created.body["webhook"]
    assert (webhook["filter"], webhook["rate_limit"]) == (LISBON_LAPTOPS, "20/s")
    one = f"/api/webhooks/{webhook['id']}"
    refused = admin.call("PATCH", one, {"filter": "data.x = 1", "name": "Renamed"})
    assert refused.status == 400
    assert refused.body["error"].startswith("filter is not a valid JMESPath expression: ")
    assert admin.call("GET", one).body["webhook"] == webhook  # nothing saved
    changed = admin.call("PATCH", one, {"rate_limit": "50/m", "filter": "asset.category == 'Chairs'"})
    assert (changed.body["webhook"]["filter"], changed.body["webhook"]["rate_limit"]) == (
        "asset.category == 'Chairs'",
        "50/m",
    )
    removed = admin.call("PATCH", one, {"rate_limit": "", "filter": None})
    assert (removed.body["webhook"]["filter"], removed.body["webhook"]["rate_limit"]) == (None, None)


def test_health_rotation_purge_and_log_pages_through_the_api(admin: AdminServer) -> None:
    webhook = new_webhook(admin, "https://example.com/hook", secret=SECRET)
    engine = make_engine(admin.env["database_url"])
    now = datetime.now(UTC)
    entries = [
        LogEntry(
            webhook["id"],
            "asset.created",
            "1",
            f"d{number}",
            1,
            number % 3 != 0,
            200,
            5.0,
            None,
            None,
            "events",
            0,
            number,
            now - timedelta(minutes=10 * number),
            None if number % 3 != 0 else now + timedelta(minutes=1),
        )
        for number in range(12)  # 0, 10, …, 110 minutes ago; every third failed and waits for its retry
    ]
    insert_entries(engine, entries)

    health = admin.call("GET", f"/api/webhooks/{webhook['id']}/health").body["health"]
    assert (health["last_day"]["succeeded"], health["last_day"]["failed"], health["retrying"]) == (8, 4, 4)
    assert len(health["hours"]) == 24
    assert sum(hour["succeeded"] + hour["failed"] for hour in health["hours"]) == 12
    assert admin.call("GET", "/api/health").body["health"][0]["summary"] == "ok, 4 retrying"
    assert admin.call("GET", "/api/webhooks/999/health").status == 404

    # pages of 5, newest first, each after the last; a row logged meanwhile does not shift them
    first = admin.call("GET", "/api/logs?limit=5").body
    insert_entries(engine, [replace(entries[0], delivery_id="new", created_at=datetime.now(UTC))])
    pages, cursor = [first["attempts"]], first["next_cursor"]
    while cursor:
        page = admin.call("GET", f"/api/logs?limit=5&cursor={cursor}").body
        pages.append(page["attempts"])
        cursor = page["next_cursor"]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [attempt["delivery_id"] for page in pages for attempt in page] == [f"d{n}" for n in range(12)]
    assert pages[0][0]["next_attempt_at"] is not None  # d0 failed: its retry is due
    refused = {"error": "cursor is not one this API gave"}
    beyond = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|1").decode()  # before year 1 in UTC
    for cursor in ("bm9wZQ", beyond, "%FF"):
        assert admin.call("GET", f"/api/logs?cursor={cursor}").body == refused

    # purge what is older than an hour: 6 attempts (60 … 110 minutes ago)
    purged = admin.call("POST", "/api/logs/purge", {"older_than": "55m"})
    assert purged.body["purged"] == 6
    assert len(admin.call("GET", "/api/logs?limit=100").body["attempts"]) == 7  # 6 left and the new one
    assert admin.call("POST", "/api/logs/purge", {"older_than": 5}).status == 400

    # rotate: a generated secret is shown once; the old one signs beside it for the grace period
    assert admin.call("POST", f"/api/webhooks/{webhook['id']}/rotate-secret", {}).status == 400
    rotated = admin.call(
        "POST", f"/api/webhooks/{webhook['id']}/rotate-secret", {"generate_secret": True, "grace": "1h"}
    ).body
    assert len(rotated["secret"]) > 30
    assert rotated["webhook"]["secret"] == "****"
    until = datetime.fromisoformat(rotated["previous_secret_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    stored = WebhookStore(engine).get(webhook["id"])
    assert stored.secret is not None
    assert stored.secret.get_secret_value() == rotated["secret"]
    assert rotated["secret"] not in admin.call("GET", f"/api/webhooks/{webhook['id']}").text
    engine.dispose()


def test_ed25519_key_pairs_through_the_api_show_only_public_keys(
    admin: AdminServer, receiver: Receiver
) -> None:
    webhook = new_webhook(admin, receiver.url("/ed"), signature="standard-ed25519", generate_key=True)
    first = webhook["public_key"]
    assert first.startswith("whpk_")
    assert webhook["secret"] == "****"
    one = f"/api/webhooks/{webhook['id']}"
    shown = admin.call("GET", one)
    assert shown.body["webhook"]["public_key"] == first
    rotated = admin.call("POST", one + "/rotate-secret", {"generate_key": True, "grace": "1h"})
    assert rotated.status == 200, rotated.text
    assert "secret" not in rotated.body
    assert rotated.body["webhook"]["previous_public_key"] == first
    assert rotated.body["webhook"]["public_key"] not in (first, None)
    listed = admin.call("GET", "/api/webhooks")
    assert listed.body["webhooks"][0]["previous_public_key"] == first
    for answer in (shown, rotated, listed):
        assert "whsk_" not in answer.text
    refusals = [
        (
            "POST",
            "/api/webhooks",
            {"name": "s", "url": receiver.url("/s"), "events": "all", "generate_key": True},
        ),
        ("PATCH", one, {"generate_secret": True}),
        ("POST", one + "/rotate-secret", {"generate_secret": True}),
        ("POST", one + "/rotate-secret", {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    ]
    errors = [admin.call(method, path, body) for method, path, body in refusals]
    assert [(answer.status, answer.body["error"]) for answer in errors] == [
        (400, "generate_key makes an Ed25519 key pair: it is for the standard-ed25519 signature"),
        (400, "the standard-ed25519 signature uses a key pair: ask for generate_key "
              "(its public key is shown, the private key never)"),
        (400, "the standard-ed25519 signature uses a key pair: ask for generate_key "
              "(its public key is shown, the private key never)"),
        (400, "an Ed25519 private key starts with whsk_ (generate one with --generate-key)"),
    ]  # fmt: skip
    assert admin.call("GET", one).body["webhook"]["public_key"] == rotated.body["webhook"]["public_key"]


def test_bad_requests_get_one_line_json_errors_never_a_500(admin: AdminServer) -> None:
    assert admin.call("GET", "/api/nowhere").body == {"error": "Not Found"}
    assert admin.call("GET", "/api/webhooks/" + "9" * 5000).status == 404
    assert admin.call("POST", "/api/webhooks", b"[" * 100_000).body == {
        "error": "the request body must be JSON"
    }
    assert admin.call(
        "POST", "/api/webhooks", {"name": "x", "url": "https://e.example", "events": True}
    ).body == {"error": "events must be a list of event names"}
    assert admin.call("GET", "/api/logs?since=nonsense").status == 400
    assert admin.call("GET", f"/api/webhooks/{2**31}").status == 404  # beyond the INTEGER id column
    for name in ("X-Trail\n", "Host\n", "Transfer-Encoding\n", "Expect"):
        refused = admin.call(
            "POST",
            "/api/webhooks",
            {"name": "x", "url": "https://e.example", "events": "all", "headers": {name: "v"}},
        )
        assert refused.status == 400, refused
        assert "header" in refused.body["error"]
    assert admin.call("GET", "/api/webhooks").body == {"webhooks": []}


def test_the_api_takes_only_documented_fields(admin: AdminServer, receiver: Receiver) -> None:
    webhook = new_webhook(admin, receiver.url("/hook"))
    one = f"/api/webhooks/{webhook['id']}"
    before = admin.call("GET", "/api/webhooks").body
    valid = {"name": "x", "url": receiver.url("/other"), "events": "all"}
    for name in ("settings", "store", "fields", "self", "id", "created_at"):
        created = admin.call("POST", "/api/webhooks", {**valid, name: 1})
        assert (created.status, created.body) == (400, {"error": f"unknown field {name!r}"}), created.text
    for name in ("webhook_id", "settings", "store", "changes", "self", "id", "disabled_reason"):
        changed = admin.call("PATCH", one, {"name": "changed", name: 2})
        assert (changed.status, changed.body) == (400, {"error": f"unknown field {name!r}"}), changed.text
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/api/logs/retry", {"ids": [1], "engine": 1}),
        ("/api/logs/retry", {"status": "failed", "limit": 5}),
        ("/api/dlq/replay", {"all": True, "settings": 1}),
        ("/api/dlq/purge", {"ids": [1], "everything": True}),
    ]
    for path, body in bodies:
        other = next(name for name in body if name not in ("ids", "all", "status"))
        answer = admin.call("POST", path, body)
        assert (answer.status, answer.body) == (400, {"error": f"unknown field {other!r}"}), path
    assert admin.call("GET", "/api/webhooks").body == before
    documented: dict[str, Any] = {"name": "y", "url": receiver.url("/y"), "events": ["asset.created"]}
    documented |= {"headers": {}, "active": False, "signature": "standard", "generate_secret": True}
    assert admin.call("POST", "/api/webhooks", documented).status == 201
    assert admin.call("PATCH", one, {"signature": "standard", "generate_secret": True}).status == 200


def test_times_out_of_range_are_one_line_errors(admin: AdminServer) -> None:
    extremes = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9" * 30 + "d"]
    for moment in extremes:
        quoted = urllib.parse.quote(moment)
        for path in (f"/api/logs?since={quoted}", f"/api/logs?until={quoted}", f"/api/dlq?since={quoted}"):
            answer = admin.call("GET", path)
            assert answer.status == 400, (path, answer.text)
            assert moment in answer.body["error"]
            assert "\n" not in answer.body["error"]
        retried = admin.call("POST", "/api/logs/retry", {"until": moment})
        assert retried.status == 400, retried.text
        from_cli = cli("logs", "--since", moment, env=admin.env.values)
        assert from_cli.code == 2, from_cli.err
        assert from_cli.err.strip() == f"Error: {answer.body['error']}"


def test_every_answer_forbids_framing_and_the_page_runs_only_its_own_files(admin: AdminServer) -> None:
    answers = {
        "page": admin.call("GET", "/"),
        "login form": admin.call("GET", "/login", token=None),
        "wrong login": admin.call("POST", "/login", b"token=wrong", token=None),
        "script": admin.call("GET", "/static/admin.js", token=None),
        "no such file": admin.call("GET", "/static/other.js", token=None),
        "api": admin.call("GET", "/api/webhooks"),
        "no token": admin.call("GET", "/api/webhooks", token=None),
        "bad request": admin.call("POST", "/api/webhooks", b"{"),
        "no such route": admin.call("GET", "/api/nowhere"),
        "openapi": admin.call("GET", "/openapi.json"),
        "health": admin.call("GET", "/healthz", token=None),
    }
    connection = http.client.HTTPConnection(admin.url.removeprefix("http://"), timeout=30)
    connection.request("GET", "/")
    redirect = connection.getresponse()
    assert redirect.status == 302
    redirect_headers = {name.lower(): value for name, value in redirect.getheaders()}
    connection.close()
    assert [answer.status for answer in answers.values()] == [
        200,
        200,
        401,
        200,
        404,
        200,
        401,
        400,
        404,
        200,
        200,
    ]
    for what, headers in [
        *((what, answer.headers) for what, answer in answers.items()),
        ("302", redirect_headers),
    ]:
        assert headers.get("x-frame-options") == "DENY", what
        assert headers.get("x-content-type-options") == "nosniff", what
        assert headers.get("referrer-policy") == "no-referrer", what
        policy = {
            directive.split()[0]: directive.split()[1:]
            for directive in headers.get("content-security-policy", "").split(";")
            if directive.strip()
        }
        assert policy.get("frame-ancestors") == ["'none'"], what
        assert policy.get("default-src") == ["'none'"], what
        assert policy.get("script-src") == ["'self'"], what
        assert policy.get("style-src") == ["'self'"], what
    for page in (answers["page"], answers["login form"], answers["wrong login"]):
        assert "<script>" not in page.text
        assert "<style" not in page.text
        assert " style=" not in page.text
        assert re.search(r"\son[a-z]+=", page.text) is None  # no onclick="..." handlers
    assert answers["script"].headers["content-type"].startswith("text/javascript")
    assert "loadWebhooks" in answers["script"].text


def test_wrong_tokens_are_slowed_down_per_address(admin_slow_to_forgive: AdminServer) -> None:
    server = admin_slow_to_forgive
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    signed_in = raw_call(server, "POST", "/login", f"token={TOKEN}".encode(), form)
    assert signed_in.status == 302
    cookie = signed_in.headers["set-cookie"].split(";")[0]

    # the sign-in form: five wrong tokens, then every attempt waits, even the right token
    wrong = [raw_call(server, "POST", "/login", f"token=guess-{n}".encode(), form) for n in range(20)]
    assert [answer.status for answer in wrong] == [401] * 5 + [429] * 15
    assert "Wrong token." in wrong[0].text
    assert "Too many wrong tokens" in wrong[-1].text
    assert 3590 < int(wrong[-1].headers["retry-after"]) <= 3600
    assert raw_call(server, "POST", "/login", f"token={TOKEN}".encode(), form).status == 429
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    refused = raw_call(server, "GET", "/api/webhooks", headers=bearer)
    assert refused.status == 429
    assert json.loads(refused.text)["error"].startswith("too many wrong admin tokens from this address")
    assert "retry-after" in refused.headers
    # a signed-in page keeps working, and a request without a token is not a guess
    assert raw_call(server, "GET", "/api/webhooks", headers={"Cookie": cookie}).status == 200
    assert raw_call(server, "GET", "/api/webhooks").status == 401

    # wrong bearer tokens count the same way, per address; other addresses are not affected
    guesses = [
        raw_call(
            server, "GET", "/api/webhooks", headers={"Authorization": f"Bearer guess-{n}"}, source="127.0.0.2"
        )
        for n in range(8)
    ]
    assert [answer.status for answer in guesses] == [401] * 5 + [429] * 3
    assert raw_call(server, "GET", "/api/webhooks", headers=bearer, source="127.0.0.2").status == 429
    assert (
        raw_call(server, "POST", "/login", f"token={TOKEN}".encode(), form, source="127.0.0.2").status == 429
    )
    assert raw_call(server, "GET", "/api/webhooks", headers=bearer, source="127.0.0.3").status == 200


def test_without_a_token_only_this_servers_own_page_may_write(admin_open: AdminServer) -> None:
    body = {"name": "x", "url": "https://hooks.example.com/x", "events": "all"}
    other_site = admin_open.call("POST", "/api/webhooks", body, token=None)
    assert other_site.status == 403
    rebound = admin_open.call("GET", "/api/webhooks", token=None, headers={"Host": "evil.example:8080"})
    assert rebound.status == 403
    assert admin_open.call("GET", "/api/webhooks", token=None).body == {"webhooks": []}
    page = admin_open.call(
        "POST", "/api/webhooks", body, token=None, headers={"X-Requested-With": "assethooks"}
    )
    assert page.status == 201


@pytest.mark.parametrize("token", [None, "", "  "])
def test_serve_refuses_to_bind_beyond_loopback_without_a_token(env: TestEnv, token: str | None) -> None:
    """An empty token is no token (docker-compose.yml passes one when the variable is unset)."""
    chosen = env if token is None else env.with_(admin_token=token)
    done = cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=chosen.values)
    assert done.code == 2
    assert done.err.strip() == (
        "Error: refusing to serve on 0.0.0.0 without ASSETHOOKS_ADMIN_TOKEN; set a token or use 127.0.0.1"
    )


def test_a_short_admin_token_is_refused(env: TestEnv) -> None:
    done = cli("serve", "--port", str(free_port()), env=env.with_(admin_token="guessable").values)
    assert (done.code, done.err.strip()) == (
        2,
        "Error: ASSETHOOKS_ADMIN_TOKEN: must be at least 16 characters (e.g. openssl rand -hex 24)",
    )


def test_schemathesis_finds_no_server_error(
    admin_sqlite: AdminServer, receiver: Receiver, tmp_path: Path
) -> None:
    new_webhook(admin_sqlite, receiver.url("/hook"))
    schemathesis = shutil.which("schemathesis", path=str(ASSETHOOKS.parent))
    assert schemathesis is not None
    done = subprocess.run(
        [
            schemathesis,
            "run",
            f"{admin_sqlite.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its cache folder goes there
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# -- the page in headless Chromium ---------------------------------------------------------------------


def publish(env: TestEnv, body: dict[str, Any]) -> None:
    with EventPublisher(env.settings()) as publisher:
        assert publisher.publish(json.dumps(body).encode())
    assert publisher.report.failed == []


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the Debian packages, through its chromedriver."""
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium, "install Debian's chromium (make system-deps)"
    assert driver_path, "install Debian's chromium-driver (make system-deps)"
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see Content-Security-Policy reports
    driver = webdriver.Chrome(service=ChromeService(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The admin page in the browser, read and clicked only inside waits.

    The page replaces a table's rows whenever it reloads them, and a reload may land between finding an
    element and reading or clicking it (StaleElementReferenceException). So every read and click here
    happens inside a wait that starts again from a fresh lookup when an element went stale or is not
    there yet; a stale click was never delivered, so trying it again is safe.
    """

    def __init__(self, browser: WebDriver) -> None:
        self.browser = browser

    def until(self, what: str, check: Callable[[], T], timeout: float = 30) -> T:
        """The first truthy ``check()``, retried while elements go stale; fails after ``timeout`` s."""
        wait = WebDriverWait(
            self.browser, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        )
        return wait.until(lambda _driver: check(), message=what)

    def read(self, selector: str) -> str:
        """The visible text of the element at ``selector``; call it inside ``until``."""
        found: str = self.browser.find_element(By.CSS_SELECTOR, selector).text
        return found

    def rows(self, table: str) -> list[str]:
        """The text of each row of ``table``'s body; call it inside ``until``: when the table is re-rendered
        meanwhile, a row goes stale and the wait reads them all again."""
        return [row.text for row in self.browser.find_elements(By.CSS_SELECTOR, f"{table} tbody tr")]

    def click(self, label: str, within: str = "body") -> None:
        """Click the button labelled ``label`` inside ``within``."""

        def press() -> bool:
            scope = self.browser.find_element(By.CSS_SELECTOR, within)
            scope.find_element(By.XPATH, f".//button[normalize-space()='{label}']").click()
            return True

        self.until(f"the {label} button", press)

    def type(self, element_id: str, text: str, *, clear: bool = False) -> None:
        """Type ``text`` into the field ``element_id``, emptied first when ``clear``."""
        field = self.browser.find_element(By.ID, element_id)  # form fields are never re-rendered
        if clear:
            field.clear()
        field.send_keys(text)

    def shows(self, selector: str, check: Callable[[str], bool], what: str) -> None:
        """Wait until the text at ``selector`` passes ``check``."""
        self.until(what, lambda: check(self.read(selector)))

    def reload_until(
        self, what: str, reload: tuple[str, str], check: Callable[[], bool], timeout: float = 30
    ) -> None:
        """Wait until ``check()``, clicking the ``reload`` button (label, within) between looks: what the
        table shows may have been written just after it was loaded."""

        def look() -> bool:
            if check():
                return True
            self.click(*reload)
            return False

        self.until(what, look, timeout)

    def answer_then_confirm(self, what: str, answer: str) -> None:
        """Type ``answer`` into the page's prompt (``what``), then accept its confirmation."""
        present = expected_conditions.alert_is_present()
        asked = self.until(what, lambda: present(self.browser))
        assert asked
        asked.send_keys(answer)
        asked.accept()
        confirmation = self.until("the confirmation", lambda: present(self.browser))
        assert confirmation
        confirmation.accept()

    def new_webhook(self, name: str, url: str, event: str) -> None:
        """Open the New Webhook form and fill in the name, the URL and one event."""
        self.click("New Webhook")
        self.type("f-name", name)
        self.type("f-url", url)
        self.browser.find_element(By.CSS_SELECTOR, f"input[value='{event}']").click()

    def sign_in(self, url: str) -> None:
        """Open the page, sign in with the token, wait for the events picker."""
        self.browser.get(url + "/")
        self.until("the login form", lambda: "/login" in self.browser.current_url)
        self.type("token", TOKEN + "\n")
        self.until(
            "the webhooks page",
            lambda: self.read("h1") == "Webhooks" and self.browser.find_elements(By.NAME, "event"),
        )


def policy_violations(browser: WebDriver) -> list[str]:
    """What the browser's console said about content the page's Content-Security-Policy refused."""
    log: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    messages = [str(entry["message"]) for entry in log]
    return [text for text in messages if "Content Security Policy" in text or "Trusted Type" in text]


def test_the_page_creates_tests_logs_and_retries(
    admin_sqlite: AdminServer, receiver: Receiver, browser: WebDriver, tmp_path: Path
) -> None:
    server = admin_sqlite
    page = Page(browser)
    page.sign_in(server.url)

    # New Webhook with an invalid URL: the CLI's message, nothing saved
    page.new_webhook("Sync to ERP", "ftp://example.com/hook", "asset.created")
    page.click("Save")
    expected = cli(
        "webhooks",
        "create",
        "--name",
        "x",
        "--url",
        "ftp://example.com/hook",
        "--event",
        "asset.created",
        env=server.env.values,
    ).err.strip()
    page.shows("#problem", lambda problem: f"Error: {problem}" == expected, "the URL problem")
    # an event the server does not know (a stale page): the CLI's message, nothing saved
    browser.execute_script(
        "const box = document.querySelector(\"input[value='asset.created']\").cloneNode();"
        "box.value = 'asset.nope'; box.checked = true;"
        "document.querySelector('#event-groups').appendChild(box);"
    )
    page.type("f-url", receiver.url("/hook"), clear=True)
    page.click("Save")
    unknown = cli(
        "webhooks",
        "create",
        "--name",
        "x",
        "--url",
        receiver.url("/hook"),
        "--event",
        "asset.nope",
        env=server.env.values,
    ).err.strip()
    page.shows("#problem", lambda problem: f"Error: {problem}" == unknown, "the event problem")
    assert server.call("GET", "/api/webhooks").body == {"webhooks": []}

    # fixed: saved, with a secret, listed
    browser.execute_script("document.querySelector(\"input[value='asset.nope']\").remove()")
    page.type("f-secret", SECRET)
    page.click("Save")
    page.shows("#webhooks tbody", lambda table: "Sync to ERP" in table, "the saved webhook")
    [webhook] = server.call("GET", "/api/webhooks").body["webhooks"]
    assert webhook["events"] == ["asset.created"]
    assert webhook["secret"] == "****"

    # Test Webhook: a signed delivery arrives, the page shows the answer
    page.click("Test Webhook", "#webhooks")
    page.shows("#test-result", lambda result: "HTTP 200" in result, "the test result")
    received = receiver.wait_for(1)[0]
    assert received.header("X-Asset-Webhook-Event") == "webhook.test"
    assert (
        verify_delivery(SECRET, received.body, dict(received.headers), now=time.time(), tolerance=60) is None
    )

    # Rotate secret, from the health panel: the grace period asked, a confirmation, the new secret once
    page.click("Health", "#webhooks")
    page.until("the health panel", lambda: page.read("#health-title") == "Health of Sync to ERP")
    page.click("Rotate secret", "#health-panel")
    page.answer_then_confirm("the grace period prompt", "1h")
    shown = page.until("the new secret", lambda: page.read("#rotated"))
    new_secret = shown.split(": ", 1)[1].split(" — ")[0]
    assert "the old one signs too until" in shown
    assert new_secret not in server.call("GET", "/api/webhooks").text

    # a real event that fails every attempt, then the retry from the logs view succeeds
    receiver.plan("/hook", then=500)
    publish(
        server.env,
        {
            "event": "asset.created",
            "timestamp": "2026-11-28T10:00:00+00:00",
            "source": "tests",
            "asset_id": 7,
            "asset": {"id": 7},
            "data": {},
        },
    )
    with service("all", server.env.values, tmp_path / "run.log"):
        read_topic(server.env["kafka_bootstrap"], server.env["dlq_topic"], count=1, timeout=60)
        assert len(receiver.requests("/hook")) == 1 + 3  # the test, then three failed attempts
        receiver.plan("/hook", then=200)
        page.click("Webhook Logs")
        filter_logs = ("Filter", "#log-filters")
        page.reload_until(
            "the failed attempts and the test delivery",
            filter_logs,
            lambda: (
                sum("asset.created" in row for row in page.rows("#logs")) == 3
                and any("webhook.test" in row for row in page.rows("#logs"))
            ),
        )
        page.click("Retry", "#logs tbody")
        page.shows("#message", lambda message: "Queued delivery" in message, "the retry to be queued")
        wait_until(
            lambda: [
                r for r in receiver.delivered("/hook") if r.header("X-Asset-Webhook-Event") == "asset.created"
            ],
            timeout=60,
            what="the retried delivery",
        )
        page.reload_until(
            "the successful retry in the logs",
            filter_logs,
            lambda: any("asset.created" in row and " 200 ok " in row for row in page.rows("#logs")),
        )
        retried = [
            r for r in receiver.delivered("/hook") if r.header("X-Asset-Webhook-Event") == "asset.created"
        ]
        now = time.time()
        for secret in (SECRET, new_secret):  # during the grace period both secrets sign
            assert (
                verify_delivery(secret, retried[0].body, dict(retried[0].headers), now=now, tolerance=120)
                is None
            )

        # the retried delivery's success resolved its dead letter; two new ones: one replayed, one purged
        receiver.plan("/hook", then=500)
        for asset_id in (8, 9):
            publish(server.env, {**_event(asset_id), "timestamp": "2026-11-28T11:00:00+00:00"})
        read_topic(server.env["kafka_bootstrap"], server.env["dlq_topic"], count=3, timeout=90)
        receiver.plan("/hook", then=200)
        page.click("Dead letters")
        page.reload_until(
            "the two new dead letters pending", ("Dead letters", "body"), lambda: len(page.rows("#dlq")) == 2
        )
        resolved = server.call("GET", "/api/dlq?status=resolved").body["entries"]
        assert [entry["asset_id"] for entry in resolved] == ["7"]
        pending = server.call("GET", "/api/dlq").body["entries"]
        page.click("Replay", "#dlq tbody tr:first-child")
        page.shows("#message", lambda message: message.startswith("Replayed 1 entries"), "the replay")
        replayed_asset = int(pending[0]["asset_id"])
        wait_until(
            lambda: [
                r for r in receiver.delivered("/hook") if json.loads(r.body).get("asset_id") == replayed_asset
            ],
            timeout=60,
            what="the replayed delivery",
        )
        page.until("one dead letter left", lambda: len(page.rows("#dlq")) == 1)
        page.shows("#dlq tbody", lambda table: "attempts-exhausted" in table, "the dead letter")
        page.click("Purge", "#dlq")
        confirmation = page.until("the confirmation", lambda: expected_conditions.alert_is_present()(browser))
        assert confirmation
        confirmation.accept()
        page.until(
            "the purge",
            lambda: (
                "Purged 1 entries" in page.read("#message")
                and "attempts-exhausted" not in page.read("#dlq tbody")
            ),
        )

        # Purge old entries… in Webhook Logs: the age asked, a confirmation, the log emptied
        page.click("Webhook Logs")
        page.click("Purge old entries…", "#log-filters")
        page.answer_then_confirm("the age prompt", "0s")
        page.shows("#message", lambda message: message.startswith("Purged "), "the log purge")
        page.until("an empty log view", lambda: page.rows("#logs") == [])
    assert policy_violations(browser) == []


def test_the_page_makes_an_ed25519_webhook_and_rotates_its_key_pair_showing_public_keys_only(
    admin_sqlite: AdminServer, receiver: Receiver, browser: WebDriver
) -> None:
    server = admin_sqlite
    page = Page(browser)
    page.sign_in(server.url)
    page.new_webhook("Signed ERP", receiver.url("/ed"), "asset.created")
    browser.find_element(By.CSS_SELECTOR, "#f-signature option[value='standard-ed25519']").click()
    browser.find_element(By.ID, "f-generate-key").click()
    page.click("Save")
    said = page.until(
        "the public key", lambda: page.read("#message") if "public key" in page.read("#message") else ""
    )
    [webhook] = server.call("GET", "/api/webhooks").body["webhooks"]
    first = webhook["public_key"]
    assert said.startswith(f"Saved webhook Signed ERP — public key (give it to the receiver): {first} — ")

    def fact(name: str) -> str:
        return page.read(f"#health-facts dd[data-fact='{name}']")

    page.click("Health", "#webhooks")
    page.until("the public key fact", lambda: fact("Public key") == first)
    page.click("Rotate secret", "#health-panel")
    page.answer_then_confirm("the grace period prompt", "1h")
    shown = page.until("the new public key", lambda: page.read("#rotated"))
    [rotated] = server.call("GET", "/api/webhooks").body["webhooks"]
    assert rotated["previous_public_key"] == first
    assert shown.startswith(
        f"New public key (give it to the receiver): {rotated['public_key']} — the old one"
    )
    page.until("both keys in the facts", lambda: fact("Public key") == rotated["public_key"])
    assert fact("Previous public key").startswith(f"{first} (signs too until ")
    assert "whsk_" not in browser.page_source
    assert policy_violations(browser) == []


def test_the_page_refuses_inline_script_and_being_framed(
    admin_sqlite: AdminServer, browser: WebDriver
) -> None:
    page = Page(browser)
    page.sign_in(admin_sqlite.url)
    assert policy_violations(browser) == []
    # what an injected string could try: an inline handler, an HTML sink, an inline script
    refused = browser.execute_script(
        "const refused = [];"
        "const probe = document.createElement('img');"
        "try { probe.setAttribute('onerror', 'document.title = 1'); } catch (e) { refused.push('handler'); }"
        "try { document.body.insertAdjacentHTML('beforeend', '<b id=sink>x</b>'); }"
        "catch (e) { refused.push('html'); }"
        "const script = document.createElement('script');"
        "try { script.textContent = 'document.title = 2'; } catch (e) { refused.push('script'); }"
        "return refused;"
    )
    assert refused == ["handler", "html", "script"]
    assert browser.title == "asset-webhooks — Webhooks"
    assert browser.find_elements(By.ID, "sink") == []
    # the policy is in force: a stylesheet from elsewhere is refused, and the console says so
    browser.execute_script(
        "const sheet = document.createElement('link'); sheet.rel = 'stylesheet';"
        "sheet.href = 'https://cdn.example.com/x.css'; document.head.appendChild(sheet);"
    )
    page.until("the refused stylesheet", lambda: policy_violations(browser))

    # another site's page framing ours, to lay its own buttons over Disable or Replay: Chromium shows its
    # error page in the frame instead
    browser.get(f"data:text/html,<iframe src='{admin_sqlite.url}/login'></iframe>")

    def in_the_frame() -> str:
        browser.switch_to.default_content()
        browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
        loaded: str = browser.execute_script("return document.readyState == 'complete' ? location.href : ''")
        return "" if loaded == "about:blank" else loaded

    assert page.until("the frame", in_the_frame) == "chrome-error://chromewebdata/"


def test_the_page_saves_a_filter_and_a_rate_limit_and_shows_a_bad_filter_in_one_line(
    admin_sqlite: AdminServer, receiver: Receiver, browser: WebDriver
) -> None:
    server = admin_sqlite
    page = Page(browser)
    page.sign_in(server.url)
    page.new_webhook("Lisbon laptops", receiver.url("/hook"), "asset.checked_out")
    page.type("f-rate-limit", "20/s")
    page.type("f-filter", "data.location == ")
    page.click("Save")
    expected = cli(
        "webhooks", "create", "--name", "x", "--url", receiver.url("/hook"), "--all-events",
        "--filter", "data.location == ", env=server.env.values,
    ).err.strip()  # fmt: skip
    assert expected.startswith("Error: filter is not a valid JMESPath expression: ")
    page.shows("#problem", lambda problem: f"Error: {problem}" == expected, "the filter problem")
    assert server.call("GET", "/api/webhooks").body == {"webhooks": []}

    page.type("f-filter", LISBON_LAPTOPS, clear=True)
    page.click("Save")
    page.shows("#webhooks tbody", lambda table: f"{LISBON_LAPTOPS} · 20/s" in table, "the saved filter")
    [webhook] = server.call("GET", "/api/webhooks").body["webhooks"]
    assert (webhook["filter"], webhook["rate_limit"]) == (LISBON_LAPTOPS, "20/s")

    # editing shows both; emptying the rate limit removes it, the filter stays
    page.click("Edit", "#webhooks")
    assert browser.find_element(By.ID, "f-filter").get_attribute("value") == LISBON_LAPTOPS
    assert browser.find_element(By.ID, "f-rate-limit").get_attribute("value") == "20/s"
    browser.find_element(By.ID, "f-rate-limit").clear()
    page.click("Save")
    page.shows("#message", lambda message: message.startswith("Saved webhook Lisbon laptops"), "the save")
    [webhook] = server.call("GET", "/api/webhooks").body["webhooks"]
    assert (webhook["filter"], webhook["rate_limit"]) == (LISBON_LAPTOPS, None)
    page.click("Health", "#webhooks")
    page.until(
        "the filter in the panel", lambda: page.read("#health-facts dd[data-fact='Filter']") == LISBON_LAPTOPS
    )
    assert page.read("#health-facts dd[data-fact='Rate limit']") == "none"


def _event(asset_id: int) -> dict[str, Any]:
    return {
        "event": "asset.created",
        "timestamp": "2026-11-30T10:00:00+00:00",
        "source": "tests",
        "asset_id": asset_id,
        "asset": {"id": asset_id},
        "data": {},
    }


def test_the_page_shows_a_failing_endpoint_and_its_recovery(
    env: TestEnv, receiver: Receiver, browser: WebDriver, tmp_path: Path
) -> None:
    """Two failures open ERP's circuit: the page shows it failing since, its circuit and its deliveries
    waiting for a retry, while Audit stays ok; once ERP answers again its health turns to ok, and the
    chart's bars count every attempt."""
    settings = env.with_(
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        admin_token=TOKEN,
        retry_schedule="20s,20s",
        breaker_failures=2,
        breaker_cooldown="10s",
    )
    page = Page(browser)

    def health_of(name: str) -> str:
        """The Health cell of the webhook called ``name``."""
        for row in browser.find_elements(By.CSS_SELECTOR, "#webhooks tbody tr"):
            cells = row.find_elements(By.TAG_NAME, "td")
            if cells and cells[0].text == name:
                found: str = cells[4].text
                return found
        return ""

    def fact(name: str) -> str:
        return page.read(f"#health-facts dd[data-fact='{name}']")

    def bars(kind: str) -> int:
        rects = browser.find_elements(By.CSS_SELECTOR, f"#health-chart rect.bar-{kind}")
        return sum(int(rect.get_attribute("data-count") or 0) for rect in rects)

    reload = ("Webhooks", "nav")
    with (
        contextmanager(_serve)(settings, tmp_path) as server,
        service("all", settings.values, tmp_path / "run.log"),
    ):
        new_webhook(server, receiver.url("/erp"), name="ERP")  # the first row
        new_webhook(server, receiver.url("/audit"), name="Audit")
        receiver.plan("/erp", then=500)
        page.sign_in(server.url)
        for asset_id in (1, 2, 3):
            publish(settings, _event(asset_id))
        receiver.wait_for(3, "/audit")
        page.reload_until(
            "ERP's circuit and retries on the page",
            reload,
            lambda: "circuit" in health_of("ERP") and "retrying" in health_of("ERP"),
        )
        assert health_of("Audit") == "ok"
        page.click("Health", "#webhooks tbody tr:first-child")
        page.until("ERP's health panel", lambda: page.read("#health-title") == "Health of ERP")
        page.until("failing since", lambda: fact("Failing since") != "—")
        page.until("the circuit", lambda: fact("Circuit").startswith(("open", "half-open")))
        page.until("the waiting retries", lambda: int(fact("Waiting for a retry")) >= 2)
        page.until("the failed bars", lambda: bars("failed") >= 2 and bars("ok") == 0)

        receiver.plan("/erp", then=200)
        wait_until(lambda: len(receiver.delivered("/erp")) >= 3, timeout=120, what="ERP's three deliveries")
        page.reload_until(
            "ERP to recover on the page",
            reload,
            lambda: (
                fact("Health") == "ok" and fact("Waiting for a retry") == "0" and fact("Circuit") == "closed"
            ),
            timeout=60,
        )
        assert health_of("ERP") == "ok"
        failed = sum(1 for request in receiver.requests("/erp") if request.status == 500)
        page.reload_until(
            "the bars of every attempt", reload, lambda: bars("ok") == 3 and bars("failed") == failed
        )
    assert policy_violations(browser) == []
