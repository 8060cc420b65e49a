"""Unit tests of the pure logic: contracts, signing, request building, retry schedule, offsets, guard."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import uuid
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from assethooks.delivery import USER_AGENT, DeliveryRequest, build_request
from assethooks.durations import format_duration, parse_duration, parse_moment, parse_time
from assethooks.errors import (
    ERROR_CODES,
    UNEXPECTED,
    BlockedDestinationError,
    ConfigError,
    HttpStatusError,
    InvalidEventError,
    InvalidWebhookError,
    KafkaUnavailableError,
    NotFoundError,
    RecordTooLargeError,
    StoreUnavailableError,
    codes_for,
)
from assethooks.guard import address_allowed, check_host, parse_networks
from assethooks.routing import Attempt, Hop, Retry, Tiers, Wait, in_tier, next_retry, postponement
from assethooks.signing import sign, signature_matches, verify_delivery
from consumers.offsets import OffsetTracker
from consumers.subscriptions import index_by_event
from schemas.events import EVENT_GROUPS, EventName, parse_event
from schemas.tasks import DELIVERY_NAMESPACE, SourceRef, delivery_id_for
from schemas.webhooks import Webhook, validate_webhook

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def event_json(**changes: object) -> bytes:
    envelope: dict[str, object] = {
        "event": "asset.created",
        "timestamp": "2025-02-04T12:00:00+00:00",
        "source": "perfex_assets_module",
        "asset_id": 123,
        "asset": {"id": 123, "name": "Laptop"},
        "data": {},
    }
    envelope.update(changes)
    return json.dumps(envelope).encode()


def test_the_seed_event_table_has_21_events_grouped_as_in_the_seed() -> None:
    names = [event.value for event in EventName]
    assert len(names) == 21
    assert sum(name.startswith("asset.") for name in names) == 17
    assert [name for name in names if name.startswith("alert.")] == [
        "alert.warranty_expiring",
        "alert.maintenance_due",
        "alert.checkout_overdue",
        "alert.low_stock",
    ]
    assert sorted(event for group in EVENT_GROUPS.values() for event in group) == sorted(EventName)


def test_a_valid_envelope_parses_and_keeps_extra_fields() -> None:
    event = parse_event(event_json(trace="abc"))
    assert event.event is EventName.ASSET_CREATED
    assert event.asset_key == "123"
    assert event.model_extra == {"trace": "abc"}


def test_a_deleted_asset_has_a_null_id_and_its_key_from_the_asset() -> None:
    event = parse_event(event_json(event="asset.deleted", asset_id=None, asset={"id": 77}))
    assert event.asset_id is None
    assert event.asset_key == "77"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty record value"),
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (event_json(event="asset.exploded"), "unknown event 'asset.exploded'"),
        (b'{"event": "asset.created"}', "missing field 'timestamp'"),
        (event_json(asset_id="123"), "field 'asset_id': Input should be a valid integer"),
        (event_json(asset_id=None), "asset_id may be null only for asset.deleted"),
        (event_json(timestamp="2025-02-04T12:00:00"), "field 'timestamp': Input should have timezone info"),
        (event_json(data=[1]), "field 'data': Input should be an object"),
    ],
)
def test_invalid_events_are_rejected_with_a_one_line_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as error:
        parse_event(raw)
    assert str(error.value).startswith(reason)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://example.com/x"}, "URL must start with http:// or https://"),
        ({"url": "https:///path"}, "URL has no host"),
        ({"url": "https://user:pw@example.com"}, "URL must not contain credentials"),
        ({"name": "  "}, "name must not be empty"),
        (
            {"events": ["asset.created", "asset.nope"]},
            "unknown event 'asset.nope'; valid events: asset.created,",
        ),
        ({"events": []}, "choose at least one event"),
        ({"headers": {"Content-Type": "text/plain"}}, "would override a delivery header"),
        ({"headers": {"x-asset-webhook-signature": "x"}}, "would override a delivery header"),
        ({"headers": {"Bad Name": "x"}}, "invalid header name 'Bad Name'"),
        ({"headers": {"X-Key": "a\r\nInjected: 1"}}, "value must be one line"),
        ({"secret": ""}, "secret must not be empty"),
    ],
)
def test_invalid_webhooks_are_rejected_with_one_line(fields: dict[str, object], message: str) -> None:
    valid: dict[str, object] = {"name": "ERP", "url": "https://example.com/hook", "events": None}
    with pytest.raises(InvalidWebhookError) as error:
        validate_webhook(**{**valid, **fields})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def webhook(**fields: object) -> Webhook:
    values: dict[str, object] = {
        "id": 1,
        "name": "ERP",
        "url": "https://erp.example.com/hook",
        "events": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Webhook.model_validate(values)


def test_webhooks_never_show_their_secret_or_header_values() -> None:
    hook = webhook(secret="s3cr3t-value", headers={"X-Api-Key": "key-value"})
    shown = json.dumps(hook.masked()) + repr(hook) + str(hook)
    assert "s3cr3t-value" not in shown
    assert "key-value" not in shown
    assert hook.masked()["headers"] == {"X-Api-Key": "****"}


def test_matching_takes_active_webhooks_subscribed_to_the_event() -> None:
    everything = webhook(id=1)
    created_only = webhook(id=2, events=["asset.created"])
    inactive = webhook(id=3, active=False)
    index = index_by_event([inactive, created_only, everything], ["asset.created", "asset.lost"])
    assert [hook.id for hook in index["asset.created"]] == [1, 2]
    assert [hook.id for hook in index["asset.lost"]] == [1]


def test_the_signature_is_the_seed_formula_over_the_exact_body() -> None:
    body = event_json()
    expected = hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
    assert sign("topsecret", body) == expected
    assert signature_matches("topsecret", body, expected.upper())
    assert not signature_matches("topsecret", body + b" ", expected)


def headers_of(request: DeliveryRequest) -> dict[str, str]:
    lines = request.head.decode("ascii").split("\r\n")
    assert lines[-1] == ""  # every line ends with CRLF
    return dict(line.split(": ", 1) for line in lines[:-1])


def test_a_request_carries_the_seed_headers_and_the_custom_ones() -> None:
    hook = webhook(secret="topsecret", headers={"X-Api-Key": "k1"})
    body = event_json()
    request = build_request(
        hook,
        body,
        event="asset.created",
        delivery_id="d-1",
        attempt=2,
        now=datetime.fromtimestamp(1_700_000_000.9, UTC),
    )
    assert request.body is body
    assert headers_of(request) == {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Asset-Webhook-Event": "asset.created",
        "X-Asset-Webhook-Timestamp": "1700000000",
        "X-Asset-Webhook-Delivery": "d-1",
        "X-Asset-Webhook-Attempt": "2",
        "X-Asset-Webhook-Signature": sign("topsecret", body),
        "X-Api-Key": "k1",
    }
    unsigned = build_request(webhook(), body, event="asset.created", delivery_id="d-1", attempt=1, now=NOW)
    assert "X-Asset-Webhook-Signature" not in headers_of(unsigned)


def test_delivery_ids_are_stable_per_event_and_webhook() -> None:
    source = SourceRef(topic="asset-events", partition=2, offset=41)
    assert delivery_id_for(source, 7) == delivery_id_for(replace(source), 7)
    assert delivery_id_for(source, 7) != delivery_id_for(source, 8)
    assert delivery_id_for(source, 7) != delivery_id_for(replace(source, offset=42), 7)
    assert delivery_id_for(source, 7) == str(uuid.uuid5(DELIVERY_NAMESPACE, "asset-events/2/41/7"))


def test_the_retry_schedule_walks_the_tiers_with_jitter_then_ends() -> None:
    schedule = (5.0, 300.0, 1800.0)
    tiers = Tiers.of(schedule, 0.2)
    assert next_retry(1, schedule, tiers, draw=0.5) == Retry(5.0, 5.0)
    low, high = next_retry(2, schedule, tiers, draw=0.0), next_retry(2, schedule, tiers, draw=0.999999)
    assert low is not None
    assert high is not None
    assert (low.tier, high.tier) == (300.0, 300.0)
    assert low.delay == pytest.approx(270.0)  # ±20 %, at most ±30 s
    assert high.delay == pytest.approx(330.0, rel=1e-5)
    assert next_retry(3, schedule, tiers, draw=0.5) is not None
    assert next_retry(4, schedule, tiers, draw=0.5) is None


def test_a_retry_after_goes_to_the_longest_tier_whose_waits_end_before_it() -> None:
    schedule = (1.0, 3.0)
    tiers = Tiers.of(schedule, 0.2)
    assert next_retry(1, schedule, tiers, 0.5, retry_after=2.0) == Retry(1.0, 2.0)  # hops once
    assert next_retry(1, schedule, tiers, 0.5, retry_after=2.5) == Retry(3.0, 2.5)
    assert next_retry(1, schedule, tiers, 0.5, retry_after=0.5) == Retry(1.0, 1.0)  # never sooner
    assert next_retry(2, schedule, tiers, 0.5, retry_after=3600.0, retry_after_max=60.0) == Retry(3.0, 60.0)


def test_no_task_waits_behind_one_due_later_by_more_than_twice_the_spread() -> None:
    """One tier partition read head first, simulated: tasks of every kind of wait are put in it over time
    (jittered steps, Retry-After values up to an hour); the reader attempts, waits for or hops its head."""
    schedule = (1.0, 3.0, 600.0)
    tiers = Tiers.of(schedule, 0.2)
    rng = random.Random(7)
    for tier in tiers.delays:
        puts: deque[tuple[float, float]] = deque()  # (put_at, due), in time order
        put_at = 0.0
        for _ in range(500):
            put_at += rng.random() * tier / 20
            retry_after = rng.choice([None, rng.random() * 4 * tier, rng.random() * 3600])
            step = next_retry(1, [tier], tiers, rng.random(), retry_after=retry_after)
            assert step is not None
            if step.tier == tier:
                puts.append((put_at, put_at + step.delay))
        queue: deque[tuple[float, float]] = deque()
        exceptions: dict[float, float] = {}  # by due: hopped with a remainder no tier holds
        now, late, attempted = 0.0, 0.0, 0
        while puts or queue:
            while puts and puts[0][0] <= now:
                queue.append(puts.popleft())
            if not queue:
                now = puts[0][0]
                continue
            put, due = queue[0]
            step_in = in_tier(tiers, tier, put_at=put, due=due, now=now)
            if isinstance(step_in, Wait):  # Defer: the partition is read again at ``until``
                assert step_in.until > now
                now = step_in.until
                continue
            queue.popleft()
            if isinstance(step_in, Hop):
                if step_in.tier == tier:  # else it leaves this tier
                    queue.append((now, due))
                    shortest = tiers.delays[0]
                    if due - now < shortest - tiers.spread(shortest):  # the stated exception
                        exceptions[due] = now
                continue
            assert due <= now  # never early
            if due in exceptions:
                shortest = tiers.delays[0]
                assert now - due <= shortest + tiers.spread(shortest)
            else:
                late = max(late, now - due)
            attempted += 1
        assert attempted > 100
        assert late <= 2 * tiers.spread(tier) + 1e-3, (tier, late)


def test_a_long_head_waits_only_as_long_as_those_behind_it_then_hops() -> None:
    tiers = Tiers.of((1.0, 3.0), 0.2)
    assert in_tier(tiers, 3.0, put_at=100.0, due=3700.0, now=100.0) == Wait(100.0 + 3.0 - 0.6)
    assert in_tier(tiers, 3.0, put_at=100.0, due=3700.0, now=102.4) == Hop(3.0)
    assert in_tier(tiers, 3.0, put_at=100.0, due=103.5, now=100.0) == Wait(103.5)
    assert in_tier(tiers, 3.0, put_at=100.0, due=103.5, now=103.5) == Attempt()
    assert in_tier(tiers, 1.0, put_at=100.0, due=102.0, now=100.8) == Hop(1.0)
    assert postponement(1, (1.0, 3.0), tiers, at_least=2.5) == Retry(3.0, 2.5)


def test_the_committable_offset_is_the_contiguous_completed_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 14):
        tracker.add(offset)
    assert tracker.done(11) is None
    assert tracker.committable is None
    assert tracker.done(10) == 12
    assert tracker.done(14) is None
    assert tracker.committable == 12
    assert tracker.done(12) == 15
    assert tracker.pending == 0
    tracker.add(15)
    with pytest.raises(ValueError, match="not after"):
        tracker.add(15)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
        "64:ff9b::7f00:1",
        "::127.0.0.1",
        "2002:7f00:1::",
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not address_allowed(ip)
    assert address_allowed(ip, parse_networks(["0.0.0.0/0", "::/0"]))
    with pytest.raises(BlockedDestinationError, match="not a public address"):
        check_host(address, ())


def test_public_addresses_pass_and_names_wait_for_resolution() -> None:
    assert address_allowed(ipaddress.ip_address("93.184.216.34"))
    assert address_allowed(ipaddress.ip_address("2606:2800:220:1::1"))
    check_host("example.com", ())  # checked by the resolver when connecting


def test_durations_read_and_write_the_short_forms() -> None:
    assert [parse_duration(text) for text in ("90", "1.5s", "250ms", "5m", "2h", "30d")] == [
        90,
        1.5,
        0.25,
        300,
        7200,
        2592000,
    ]
    assert [format_duration(seconds) for seconds in (5, 300, 7200, 86400 * 30, 1.5)] == [
        "5s",
        "5m",
        "2h",
        "30d",
        "1500ms",
    ]
    with pytest.raises(ConfigError):
        parse_duration("soon")
    assert parse_moment("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_moment("2026-11-01T00:00:00", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert format_duration(0) == "0s"


@pytest.mark.parametrize(
    "text",
    ["999999999999d", "36501d", "9" * 400, "9" * 400 + "s"],  # 400 nines make float('inf')
)
def test_durations_longer_than_a_century_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^duration too long: .* \(at most 36500d\)$"):
        parse_duration(text)
    with pytest.raises(ConfigError, match=r"^not a time: .* is too long ago \(at most 36500d\)$"):
        parse_moment(text, NOW)


def test_the_longest_duration_and_the_edges_of_time_still_compute() -> None:
    assert parse_duration("36500d") == 36500 * 86400
    assert parse_moment("36500d", NOW) == NOW - timedelta(days=36500)
    assert parse_time("1900-01-01T00:00:00Z") == datetime(1900, 1, 1, tzinfo=UTC)
    assert parse_time("8999-12-31T23:59:59+00:00") + timedelta(days=36500) > NOW


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "1899-12-31T23:59:59Z", "9000-01-01T00:00:00"],
)
def test_times_out_of_range_are_refused_before_they_overflow(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^time out of range: .* \(years 1900 to 8999\)$"):
        parse_moment(text, NOW)
    with pytest.raises(ConfigError, match=r"^time out of range: "):
        parse_time(text)


def test_a_receiver_verifies_signature_and_timestamp() -> None:
    body = event_json()
    good = {"X-Asset-Webhook-Signature": sign("s", body), "X-Asset-Webhook-Timestamp": "1000"}
    assert verify_delivery("s", body, good, now=1100) is None
    assert verify_delivery("s", body, {"x-asset-webhook-timestamp": "1000"}, now=1000) == (
        "no X-Asset-Webhook-Signature header"
    )
    assert verify_delivery("other", body, good, now=1000) == "signature does not match the body"
    assert verify_delivery("s", body, {**good, "X-Asset-Webhook-Timestamp": "soon"}, now=1000) == (
        "missing or malformed X-Asset-Webhook-Timestamp header"
    )
    assert verify_delivery("s", body, good, now=1400) == "timestamp 1000 is more than 300s away from now"
    rotating = {**good, "X-Asset-Webhook-Signature-Next": sign("new", body)}
    assert verify_delivery("new", body, rotating, now=1000) is None
    assert verify_delivery("s", body, rotating, now=1000) is None


def test_one_table_gives_an_error_its_exit_code_and_http_status() -> None:
    assert codes_for(InvalidEventError("bad")) == (2, 400)
    assert codes_for(ConfigError("bad")) == (2, 400)
    assert codes_for(NotFoundError("gone")) == (3, 404)
    assert codes_for(KafkaUnavailableError("down")) == (4, 503)
    assert codes_for(StoreUnavailableError("down")) == (4, 503)
    assert codes_for(HttpStatusError("HTTP 500", status_code=500)) == (5, 502)
    assert codes_for(BlockedDestinationError("blocked")) == (5, 502)
    assert codes_for(RecordTooLargeError("big")) == UNEXPECTED == (1, 500)
    # the CLI and the API agree: an exit code always stands for the same HTTP status
    statuses = {codes.exit_code: codes.http_status for _, codes in ERROR_CODES}
    assert len(statuses) == len({codes for _, codes in ERROR_CODES})
