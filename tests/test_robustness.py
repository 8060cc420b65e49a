"""No configuration and no event value stops a process: what cannot be used is refused when saved or
dead-lettered with its reason, and everything else is delivered."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from assethooks.alerts import FieldNames, apply
from assethooks.delivery import DeliveryRequest, HttpSender, build_request
from assethooks.errors import InvalidEventError, InvalidWebhookError, PermanentDeliveryError
from assethooks.guard import address_allowed, check_destination, parse_networks
from assethooks.kafka import ensure_topics
from assethooks.store.assets import all_states
from assethooks.store.db import make_engine
from assethooks.store.migrate import upgrade
from assethooks.store.models import WebhookRow
from assethooks.store.webhooks import WebhookStore
from schemas.events import AssetEvent, parse_event
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, DeadLetterKind, header_value
from schemas.webhooks import Webhook, validate_webhook
from tests.conftest import TestEnv
from tests.support import Receiver, cli, committed_to_end, read_topic, service, wait_until

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


def envelope(**changes: Any) -> dict[str, Any]:
    return {
        "event": "asset.updated",
        "timestamp": "2026-11-28T12:00:00+00:00",
        "source": "perfex_assets_module",
        "asset_id": 7,
        "asset": {"id": 7, "name": "Laptop"},
        "data": {},
        **changes,
    }


def raw(**changes: Any) -> bytes:
    return json.dumps(envelope(**changes)).encode()


# -- webhook configurations that cannot be sent are refused when saved ---------------------------------


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("X-Trail\n", "key-1", "invalid header name"),
        ("Host\n", "example.com", "invalid header name"),
        ("Content-Length\n", "5", "invalid header name"),
        ("Transfer-Encoding\n", "chunked", "invalid header name"),
        ("X Space", "key-1", "invalid header name"),
        ("", "key-1", "invalid header name"),
        ("X-" + "a" * 200, "key-1", "invalid header name"),
        ("Expect", "100-continue", "changes how the request is sent"),
        ("Upgrade", "h2c", "changes how the request is sent"),
        ("host", "example.com", "would override a delivery header"),
        ("X-Asset-Webhook-Event", "x", "would override a delivery header"),
        ("X-Ok", "two\r\nlines", "must be one line"),
        ("X-Ok", "caf\udcff", "printable ASCII"),
        ("X-Ok", "café", "printable ASCII"),
        ("X-Ok", "\x1b[31m", "printable ASCII"),
        ("X-Ok", "v" * 5000, "longer than"),
    ],
)
def test_a_custom_header_that_cannot_be_sent_as_given_is_refused(name: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidWebhookError, match=problem) as refused:
        validate_webhook(name="x", url="https://example.com/h", headers={name: value})
    assert len(value) < 4 or value not in str(refused.value)  # header values may be secrets


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", "ERP \u202e", "invisible formatting"),
        ("name", "caf\udce9", "valid UTF-8"),
        ("url", "https://exa\u00admple.com/h", "invisible formatting"),
        ("url", "https://exa\u200bmple.com/h", "invisible formatting"),
        ("url", "https://example.com/\ud800", "valid UTF-8"),
        ("url", "http://2130706433/h", "four numbers"),
        ("url", "http://127.1/h", "four numbers"),
        ("url", "http://0x7f000001/h", "four numbers"),
        ("url", "http://017700000001/h", "four numbers"),
        ("url", "http://1.2.3.04/h", "four numbers"),
        ("url", "http://1.2.3.256/h", "four numbers"),
        ("secret", "s" * 513, "longer than 512 bytes"),
        ("secret", "caf\udce9", "valid UTF-8"),
    ],
)
def test_text_that_would_mislead_or_cannot_be_stored_is_refused(field: str, value: str, problem: str) -> None:
    fields = {"name": "x", "url": "https://example.com/h", field: value}
    with pytest.raises(InvalidWebhookError, match=problem):
        validate_webhook(**fields)


def test_ordinary_hosts_with_digits_are_still_accepted() -> None:
    for url in ("https://1.2.3.4/h", "https://api2.example.com/h", "https://[2606:4700::1111]/h"):
        assert validate_webhook(name="x", url=url).url == url


def store_an_old_row(engine: Engine, url: str) -> int:
    """A webhook as an older version could save it: its header name no longer validates."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        row = WebhookRow(
            name="old", url=url, events=None, headers={"X-Trail\n": "v"}, active=True,
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def test_a_stored_webhook_no_longer_valid_gets_one_line_from_every_command(
    env: TestEnv, engine: Engine
) -> None:
    old = str(store_an_old_row(engine, "http://127.0.0.1:9/old"))
    for command in (["show", old], ["test", old], ["update", old, "--name", "renamed"]):
        result = cli("webhooks", *command, env=env.values)
        assert result.code == 2, (command, result)
        (line,) = result.err.strip().splitlines()
        assert f"webhook {old} is stored with a value no longer accepted" in line
        assert "invalid header name" in line
    listed = cli("webhooks", "list", "--json", env=env.values)
    assert listed.code == 0
    assert json.loads(listed.out) == []
    deleted = cli("webhooks", "delete", old, env=env.values, stdin="y\n")
    assert deleted.code == 0, deleted
    assert f"Deleted webhook {old} (old)" in deleted.out


# -- destinations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # SIIT (IPv4-translated) loopback
        "::ffff:0:a9fe:a9fe",  # SIIT metadata address
        "64:ff9b:1::7f00:1",  # local-use NAT64 (RFC 8215)
        "64:ff9b:1:a9fe:a9:fe00::",  # the metadata address at another offset of a /48
        "64:ff9b:1::808:808",  # even a public one: the prefix itself is local
    ],
)
def test_translated_ipv6_forms_of_local_addresses_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address))
    with pytest.raises(Exception, match="not a public address"):
        check_destination(f"http://[{address}]/h", ())


def test_public_translated_addresses_still_pass() -> None:
    assert address_allowed(ipaddress.ip_address("::ffff:0:808:808"))
    assert address_allowed(ipaddress.ip_address("64:ff9b::808:808"))


# -- the sender: a request that cannot be made is a permanent failure, never an exception ---------------


@pytest.fixture
def loopback() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def send(*requests: DeliveryRequest) -> list[Any]:
    async def run() -> list[Any]:
        async with HttpSender(timeout=5, allowed=LOOPBACK) as sender:
            return [await sender.send(request) for request in requests]

    return asyncio.run(run())


def test_a_request_that_cannot_be_built_or_addressed_is_a_permanent_failure(loopback: Receiver) -> None:
    results = send(
        DeliveryRequest(f"http://2130706433:{loopback.port}/b", b"{}", b""),
        DeliveryRequest(f"http://127.1:{loopback.port}/c", b"{}", b""),
        DeliveryRequest(loopback.url("/ok"), b"{}", b"X-Ok: 1\r\n"),
    )
    for result in results[:2]:
        assert isinstance(result.failure, PermanentDeliveryError), result
        assert not result.failure.retryable
    assert results[2].ok
    assert [request.path for request in loopback.requests()] == ["/ok"]
    # a webhook stored before its headers were checked (validation bypassed here): never sent as is
    now = datetime.now(UTC)
    for headers in ({"X-Trail\n": "v"}, {"X-Ok": "caf\udcff"}, {"X-Ok": "two\r\nHost: evil"}):
        webhook = Webhook.model_construct(
            id=9, name="old", url=loopback.url("/never"), events=None, secret=None, active=True,
            signature="seed", created_at=now, updated_at=now,
            headers={name: SecretStr(value) for name, value in headers.items()},
        )  # fmt: skip
        with pytest.raises(PermanentDeliveryError, match="cannot be sent"):
            build_request(webhook, b"{}", event="asset.created", delivery_id="d", attempt=1, now=now)


# -- events: strict JSON, extreme values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":7,'
         b'"asset":{},"data":{"x":1e400}}', "too large for a double"),
        (b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":7,'
         b'"asset":{},"data":{"x":-1e999}}', "too large for a double"),
        (b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":7,'
         b'"asset":{},"data":{"x":NaN}}', "NaN, Infinity"),
        (b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":7,'
         b'"asset":{},"data":{"x":Infinity}}', "NaN, Infinity"),
        (b'{"event":"asset.created","event":"asset.deleted","timestamp":"2026-11-28T12:00:00+00:00",'
         b'"source":"s","asset_id":7,"asset":{},"data":{}}', "key 'event' appears twice"),
        (b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":7,'
         b'"asset":{"a":{"b":1, "b" :2}},"data":{}}', "key 'b' appears twice"),
        (raw(timestamp=1764331200), "ISO 8601"),
        (raw(timestamp="1764331200"), "ISO 8601"),
        (raw(timestamp="2026-11-28"), "ISO 8601"),
        (raw(asset_id=10**400), "asset_id"),
    ],
)  # fmt: skip
def test_values_that_are_not_strict_json_or_break_the_envelope_are_invalid(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason) as refused:
        parse_event(body)
    assert "Value error" not in str(refused.value)


def test_strict_json_accepts_what_merely_looks_odd() -> None:
    looks_like_a_key = raw(data={"note": 'he said "a": b', "x": '\\":'})
    assert parse_event(looks_like_a_key).data["x"] == '\\":'
    huge = parse_event(raw(data={"quantity": 10**400, "due_date": "9999-12-31"}))
    assert huge.data["quantity"] == 10**400
    far = parse_event(raw(timestamp="9999-12-31T23:59:59-23:59"))
    assert far.timestamp.year == 9999


@pytest.mark.parametrize(
    "data",
    [
        {"quantity": 10**400, "min_quantity": 5},
        {"quantity": "1e400", "min_quantity": -(10**400)},
        {"due_date": "9999-12-31", "checkout_id": "c"},
        {"due_date": "0001-01-01T00:00:00+23:59", "checkout_id": "c"},
        {"due_date": "9999-12-31T23:59:59-23:59", "checkout_id": "x" * 10_000},
        {"warranty_end_date": "9999-12-31T23:59:59-23:59", "maintenance_date": "0001-01-01"},
    ],
)
def test_the_alert_rules_take_any_value_without_raising(data: dict[str, Any]) -> None:
    event = AssetEvent.model_validate(envelope(event="asset.checked_out", data=data))
    state = apply(None, event, "7", (0, 1), FieldNames())
    assert state is not None
    assert state.checkout_key is None or len(state.checkout_key) <= 80
    if state.checkout_due is not None:
        assert state.checkout_due.tzinfo is UTC


# -- through the real pipeline -----------------------------------------------------------------------------


def all_read(env: TestEnv, group: str) -> bool:
    return committed_to_end(env["kafka_bootstrap"], group, env["source_topic"])


@pytest.fixture(params=["sqlite", "postgres"])
def store(env: TestEnv, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The test's migrated store on SQLite and on PostgreSQL, with the topics created."""
    if request.param == "postgres":
        env.values["ASSETHOOKS_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    engine = make_engine(env["database_url"])
    upgrade(engine)
    ensure_topics(env.settings())
    yield engine
    engine.dispose()


def test_run_all_keeps_going_through_extreme_values_and_dead_letters_what_is_not_strict_json(
    env: TestEnv, store: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    WebhookStore(store).create(validate_webhook(name="ERP", url=receiver.url("/erp")))
    store_an_old_row(store, receiver.url("/old"))
    valid = [
        raw(event="asset.updated", asset_id=1, data={"quantity": 10**400, "min_quantity": 3}),
        raw(event="asset.checked_out", asset_id=2, data={"due_date": "9999-12-31", "checkout_id": "c1"}),
        raw(event="asset.checked_out", asset_id=3, data={"due_date": "0001-01-01T00:00:00+23:59"}),
        raw(
            event="asset.checked_out", asset_id=4, data={"checkout_id": "k" * 5000, "due_date": "2026-01-01"}
        ),
        raw(event="asset.updated", asset_id=5, timestamp="9999-12-31T23:59:59-23:59", asset={"n": "\x00"}),
        raw(event="asset.deleted", asset_id=None, asset={"id": "9" * 300}),
        raw(event="asset.updated", asset_id=6, data={"quantity": 2, "min_quantity": 3}),
    ]
    invalid = [
        b'{"event":"asset.updated","timestamp":"2026-11-28T12:00:00+00:00","source":"s","asset_id":1,'
        b'"asset":{},"data":{"x":1e400}}',
        b'{"event":"asset.created","event":"asset.deleted","timestamp":"2026-11-28T12:00:00+00:00",'
        b'"source":"s","asset_id":1,"asset":{},"data":{}}',
        raw(timestamp=1764331200),
    ]
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"]})  # a client that does not validate
    for body in [*valid, *invalid]:
        producer.produce(env["source_topic"], body)
    assert producer.flush(30) == 0
    with service("all", env.values, tmp_path / "run.log") as running:
        delivered = receiver.wait_for(len(valid), "/erp")
        dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=len(invalid))
        for group in (env["dispatcher_group"], env["projector_group"]):
            wait_until(partial(all_read, env, group), what=f"{group} to commit every record")
        assert running.running
    assert sorted(request.body for request in delivered) == sorted(valid)
    assert receiver.requests("/old") == []
    letters = [
        DeadLetter.model_validate_json(header_value(r.headers(), DEAD_LETTER_HEADER) or b"") for r in dead
    ]
    assert {letter.kind for letter in letters} == {DeadLetterKind.INVALID_EVENT}
    reasons = sorted(letter.reason for letter in letters)
    assert any("too large for a double" in reason for reason in reasons), reasons
    assert any("appears twice" in reason for reason in reasons), reasons
    assert any("ISO 8601" in reason for reason in reasons), reasons
    log = running.output()
    assert "is stored with a value no longer accepted" in log
    assert "Traceback" not in log
    states = {state.asset_id: state for state in all_states(store)}
    assert states["6"].low  # ordinary facts beside the extreme ones are projected
    assert states["1"].quantity is None  # a quantity no double holds is unknown, not a crash
    assert states["2"].checkout_key == "c1"
    assert len(states["4"].checkout_key or "") <= 80
    assert "9" * 300 not in states  # an asset id longer than the projection's key is skipped


def test_a_deleted_webhooks_id_is_never_given_to_another(store: Engine) -> None:
    """Else a retry still waiting for the deleted webhook would go to the new one, signed with its secret."""
    webhooks = WebhookStore(store)
    first = webhooks.create(validate_webhook(name="a", url="https://a.example.com/h"))
    second = webhooks.create(validate_webhook(name="b", url="https://b.example.com/h"))
    webhooks.delete(second.id)
    third = webhooks.create(validate_webhook(name="c", url="https://c.example.com/h"))
    assert third.id not in {first.id, second.id}
