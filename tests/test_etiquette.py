"""Endpoint etiquette, observed from the receiver's side: Retry-After, 410 Gone, the circuit breaker, and
auto-disable without losing the webhook's pending deliveries."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from assethooks.store.delivery_log import recent_entries
from assethooks.store.webhooks import WebhookStore
from consumers.breaker import Breakers, Transition
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, header_value
from schemas.webhooks import Webhook, validate_webhook
from tests.conftest import TestEnv
from tests.support import Answer, Receiver, cli, committed_to_end, read_topic, service, wait_until


def add_webhook(engine: Engine, url: str) -> Webhook:
    return WebhookStore(engine).create(validate_webhook(name="endpoint", url=url, events=None))


def publish(env: TestEnv, *asset_ids: int) -> None:
    lines = "".join(
        json.dumps(
            {
                "event": "asset.updated",
                "timestamp": "2026-11-28T12:00:00+00:00",
                "source": "perfex_assets_module",
                "asset_id": asset_id,
                "asset": {"id": asset_id},
                "data": {},
            }
        )
        + "\n"
        for asset_id in asset_ids
    )
    assert cli("publish", "--file", "-", env=env.values, stdin=lines).code == 0


def disabled(env: TestEnv, webhook_id: int) -> dict[str, Any]:
    """The webhook as shown once it is inactive; empty while it is still active."""
    shown: dict[str, Any] = webhook_json(env, webhook_id)
    return shown if shown["active"] is False else {}


def all_committed(env: TestEnv) -> bool:
    return committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])


def webhook_json(env: TestEnv, webhook_id: int) -> Any:
    return json.loads(cli("webhooks", "show", str(webhook_id), "--json", env=env.values).out)


def test_retry_after_delays_the_next_attempt_at_least_that_long(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, receiver.url("/busy"))
    receiver.plan("/busy", Answer(503, {"Retry-After": "4"}), Answer(429, {"Retry-After": "3"}), then=200)
    publish(env, 1)
    with service("all", env.with_(retry_schedule="1s,1s").values, tmp_path / "run.log"):
        first, second, third = receiver.wait_for(3, "/busy", timeout=60)
    assert second.at - first.at >= 3.9  # the schedule says 1 s; the endpoint said 4
    assert third.at - second.at >= 2.9
    assert [request.header("X-Asset-Webhook-Attempt") for request in (first, second, third)] == [
        "1",
        "2",
        "3",
    ]


def test_one_endpoints_retry_after_does_not_hold_back_anothers_retries(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    """A asks for an hour; its task waits in the longest tier, where B's third attempt queues behind it."""
    add_webhook(engine, receiver.url("/a"))
    add_webhook(engine, receiver.url("/b"))
    receiver.plan("/a", then=Answer(429, {"Retry-After": "3600"}))
    receiver.plan("/b", 500, 500, then=204)
    publish(env, 1)
    settings = env.with_(retry_schedule="1s,3s", retry_after_max="1h")
    with service("all", settings.values, tmp_path / "run.log"):
        first, second, third = receiver.wait_for(3, "/b", timeout=30)
        wait_until(lambda: all_committed(env), what="the event to be done with")
    assert [request.status for request in (first, second, third)] == [500, 500, 204]
    assert [request.header("X-Asset-Webhook-Attempt") for request in (first, second, third)] == [
        "1",
        "2",
        "3",
    ]
    assert third.at - second.at >= 3.0 * 0.8  # on schedule, and not sooner
    assert len(receiver.requests("/a")) == 1  # A's hour is still running
    listed = cli("dlq", "list", "--json", env=env.values)
    assert json.loads(listed.out)["total"] == 0  # nor dead-lettered: it waits, hopping in the 3 s tier


def test_410_gone_disables_the_webhook_and_says_why(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, receiver.url("/gone"))
    receiver.plan("/gone", then=410)
    publish(env, 1)
    with service("all", env.values, tmp_path / "run.log"):
        (record,) = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1)
        shown = wait_until(lambda: disabled(env, hook.id))
        publish(env, 2, 3)  # after the change reached the dispatcher: nothing more is sent
        wait_until(lambda: all_committed(env), what="the dispatcher to pass the later events")
    assert shown["disabled_reason"].startswith("the endpoint answered 410 Gone at ")
    letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
    assert "HTTP 410: the endpoint is gone" in letter.reason
    assert len(receiver.requests("/gone")) == 1
    listing = cli("webhooks", "list", env=env.values).out
    assert listing.splitlines()[0].split()[-1] == "HEALTH"
    assert "disabled: the endpoint answered 410 Gone" in listing


def test_an_open_circuit_sends_nothing_until_its_probe_succeeds(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, receiver.url("/flaky"))
    receiver.plan("/flaky", then=500)
    settings = env.with_(breaker_failures=3, breaker_cooldown="8s", retry_schedule="1h")
    with service("dispatcher", settings.values, tmp_path / "run.log") as running:
        publish(settings, 1, 2, 3)
        receiver.wait_for(3, "/flaky")
        wait_until(lambda: "circuit opened for webhook" in running.output(), what="the circuit to open")
        opened = time.monotonic()
        publish(settings, 4, 5, 6, 7, 8)
        wait_until(lambda: all_committed(settings), what="the deliveries while open to be handed on")
        assert len(receiver.requests("/flaky")) == 3  # none arrived while open (a probe would be a 4th)
        receiver.plan("/flaky", then=200)
        wait_until(lambda: time.monotonic() - opened > 8.5, timeout=15, what="the cooldown to pass")
        publish(settings, 9)  # the probe
        receiver.wait_for(4, "/flaky")
        wait_until(lambda: "circuit closed for webhook" in running.output(), what="the circuit to close")
        publish(settings, 10, 11)
        receiver.wait_for(6, "/flaky")
    told = re.findall(
        rf"postponed (\d+) deliver(?:y|ies) of webhook {hook.id} to a retry tier", running.output()
    )
    assert sum(int(count) for count in told) == 5  # not sent, not an attempt: moved past the cooldown
    assert len(recent_entries(engine, webhook_id=hook.id)) == 6  # 3 failed, the probe, 2 delivered


def test_a_webhook_failing_too_long_is_disabled_and_its_deliveries_arrive_once_enabled(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, receiver.url("/down"))
    receiver.plan("/down", then=500)
    settings = env.with_(
        auto_disable_after="3s", breaker_failures=0, retry_schedule="1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"
    )
    publish(settings, 1, 2)
    with service("all", settings.values, tmp_path / "run.log") as running:
        shown = wait_until(lambda: disabled(settings, hook.id), timeout=40)
        dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=2, timeout=30)
        assert "webhook 1 disabled: failing without a success since" in running.output()
    assert shown["disabled_reason"].startswith("failing without a success since ")
    assert shown["disabled_reason"].endswith("(over 3s)")
    reasons = {
        DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"").reason
        for record in dead
    }
    assert reasons == {f"webhook {hook.id} was disabled"}
    failed_before = len(receiver.requests("/down"))

    receiver.plan("/down", then=200)
    assert cli("webhooks", "enable", str(hook.id), env=settings.values).code == 0
    assert webhook_json(settings, hook.id)["disabled_reason"] is None
    replayed = cli("dlq", "replay", "--webhook", str(hook.id), env=settings.values)
    assert replayed.out.strip().splitlines()[-1] == "replayed 2 entries, 0 missing from the topic"
    with service("all", settings.values, tmp_path / "again.log"):
        wait_until(
            lambda: len(receiver.requests("/down")) >= failed_before + 2, what="the replayed deliveries"
        )
    delivered = {
        json.loads(request.body)["asset_id"] for request in receiver.requests("/down")[failed_before:]
    }
    assert delivered == {1, 2}


def test_the_breaker_rules() -> None:
    breakers = Breakers(threshold=2, cooldown=10, max_cooldown=25)
    assert breakers.allow(1, 0)
    assert breakers.record(1, ok=False, trips=False, now=0) is None  # a 4xx does not count
    assert breakers.record(1, ok=False, trips=True, now=1) is None
    assert breakers.record(1, ok=False, trips=True, now=2) is Transition.OPENED
    assert not breakers.allow(1, 5)
    assert breakers.allow(2, 5)  # other endpoints are not concerned
    assert breakers.allow(1, 12.5)  # the probe
    assert not breakers.allow(1, 12.6)  # only one
    assert breakers.record(1, ok=False, trips=True, now=13) is Transition.REOPENED  # twice as long
    assert not breakers.allow(1, 32)
    assert breakers.allow(1, 33.5)
    assert breakers.record(1, ok=True, trips=False, now=34) is Transition.CLOSED
    assert breakers.allow(1, 34.1)
    assert not breakers.is_open(1)
