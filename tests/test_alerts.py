"""The alerts cron producer and the asset-state projection, with an injected clock (``--now``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from assethooks.alerts import AssetState, FieldNames, apply, due_alerts
from assethooks.store.assets import all_states
from assethooks.store.webhooks import WebhookStore
from schemas.events import AssetEvent, parse_event
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import ASSETHOOKS, Receiver, cli, committed_to_end, read_topic, service, wait_until

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ALERTS = ["alert.warranty_expiring", "alert.maintenance_due", "alert.checkout_overdue", "alert.low_stock"]


def event(name: str, asset_id: int, asset: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {
        "event": name,
        "timestamp": "2026-05-20T10:00:00+00:00",
        "source": "perfex_assets_module",
        "asset_id": None if name == "asset.deleted" else asset_id,
        "asset": {"id": asset_id, "name": f"Asset {asset_id}", **(asset or {})},
        "data": data,
    }


HISTORY = [
    # warranty: one within 30 days, one too far, one deleted
    event("asset.created", 101, {"warranty_end_date": "2026-06-20"}),
    event("asset.created", 102, {"warranty_end_date": "2026-09-01"}),
    event("asset.created", 103, {"warranty_end_date": "2026-06-10"}),
    event("asset.deleted", 103),
    # maintenance: one within 7 days, one completed, one too far
    event("asset.maintenance_scheduled", 201, maintenance_date="2026-06-05"),
    event("asset.maintenance_scheduled", 202, maintenance_date="2026-06-04"),
    event("asset.maintenance_completed", 202),
    event("asset.maintenance_scheduled", 203, maintenance_date="2026-06-30"),
    # checkouts: one overdue, one returned, one not yet due
    event("asset.checked_out", 301, due_date="2026-05-30T17:00:00+00:00"),
    event("asset.checked_out", 302, due_date="2026-05-30T17:00:00+00:00"),
    event("asset.checked_in", 302),
    event("asset.checked_out", 303, due_date="2026-06-10T17:00:00+00:00"),
    # stock: one drop below the minimum, one not
    event("asset.created", 401, {"quantity": 10, "min_quantity": 5}),
    event("asset.updated", 401, {"quantity": 3}),
    event("asset.created", 402, {"quantity": 10, "min_quantity": 5}),
    event("asset.updated", 402, {"quantity": 6}),
]


# -- the rules, as pure functions ----------------------------------------------------------------------


def replay(events: list[dict[str, Any]]) -> dict[str, AssetState]:
    states: dict[str, AssetState] = {}
    for offset, envelope in enumerate(events):
        parsed: AssetEvent = parse_event(json.dumps(envelope).encode())
        key = str(envelope["asset"]["id"])
        after = apply(states.get(key), parsed, key, (0, offset), FieldNames())
        if after is not None:
            states[key] = after
    return states


def keys(states: dict[str, AssetState], now: datetime) -> list[str]:
    found = due_alerts(
        list(states.values()), now, warranty_window=timedelta(days=30), maintenance_window=timedelta(days=7)
    )
    return sorted(alert.key for alert in found)


def test_the_rules_pick_exactly_the_four_due_conditions() -> None:
    states = replay(HISTORY)
    assert keys(states, NOW) == [
        "low_stock:401:1",
        "maintenance:201:2026-06-05",
        "overdue:301:0-8",
        "warranty:101:2026-06-20",
    ]
    assert states["202"].maintenance_date is None
    assert states["302"].checkout_key is None
    assert states["103"].gone


def test_windows_are_inclusive_and_end_when_the_date_passes() -> None:
    states = replay(HISTORY)
    assert "warranty:102:2026-09-01" in keys(states, datetime(2026, 8, 2, tzinfo=UTC))
    assert "warranty:102:2026-09-01" not in keys(states, datetime(2026, 8, 1, tzinfo=UTC))
    assert "warranty:101:2026-06-20" in keys(states, datetime(2026, 6, 20, 23, 0, tzinfo=UTC))
    assert "warranty:101:2026-06-20" not in keys(states, datetime(2026, 6, 21, tzinfo=UTC))
    assert "overdue:303:0-11" in keys(states, datetime(2026, 6, 10, 17, 1, tzinfo=UTC))


def test_low_stock_rearms_after_a_restock_and_redelivery_changes_nothing() -> None:
    history = [
        *HISTORY,
        event("asset.updated", 401, {"quantity": 8}),
        event("asset.updated", 401, {"quantity": 1}),
    ]
    states = replay(history)
    assert states["401"].stock_drops == 2
    assert "low_stock:401:2" in keys(states, NOW)
    again = apply(
        states["401"],
        parse_event(json.dumps(history[-1]).encode()),
        "401",
        (0, len(history) - 1),
        FieldNames(),
    )
    assert again is None  # the same position once more: already applied
    assert replace(states["401"], stock_drops=2) == states["401"]


def test_field_names_are_configurable() -> None:
    fields = FieldNames(warranty_end="guarantee_until")
    parsed = parse_event(json.dumps(event("asset.created", 7, {"guarantee_until": "2026-06-15"})).encode())
    state = apply(None, parsed, "7", (0, 0), fields)
    assert state is not None
    assert state.warranty_end == date(2026, 6, 15)


# -- against the real broker ---------------------------------------------------------------------------


def publish(env: TestEnv, events: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(item) + "\n" for item in events)
    done = cli("publish", "--file", "-", env=env.values, stdin=lines)
    assert done.code == 0, done.err


def projected(env: TestEnv) -> bool:
    return committed_to_end(env["kafka_bootstrap"], env["projector_group"], env["source_topic"])


def alerts_run(env: TestEnv, now: datetime) -> str:
    result = cli("run", "alerts", "--once", "--now", now.isoformat(), env=env.values)
    assert result.code == 0, result.err
    return result.out.strip().splitlines()[-1]


def alert_events(env: TestEnv, count: int) -> list[dict[str, Any]]:
    records = read_topic(env["kafka_bootstrap"], env["source_topic"], count=count)
    found = [json.loads(record.value() or b"{}") for record in records]
    return [item for item in found if item["event"].startswith("alert.")]


def test_each_due_alert_is_published_once_and_delivered(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    WebhookStore(engine).create(validate_webhook(name="Alerts", url=receiver.url("/alerts"), events=ALERTS))
    publish(env, HISTORY)
    with service("all", env.values, tmp_path / "run.log"):
        wait_until(lambda: projected(env), what="the projection to catch up")
        assert alerts_run(env, NOW).endswith("4 sent, 0 already sent, 0 failed")
        delivered = receiver.wait_for(4, "/alerts")
        assert alerts_run(env, NOW).endswith("0 sent, 4 already sent, 0 failed")

        published = alert_events(env, len(HISTORY) + 4)
        assert sorted((item["event"], item["asset_id"]) for item in published) == [
            ("alert.checkout_overdue", 301),
            ("alert.low_stock", 401),
            ("alert.maintenance_due", 201),
            ("alert.warranty_expiring", 101),
        ]
        warranty = next(item for item in published if item["event"] == "alert.warranty_expiring")
        assert warranty["data"]["warranty_end_date"] == "2026-06-20"
        assert warranty["data"]["days_left"] == 19
        assert warranty["asset"]["name"] == "Asset 101"
        assert warranty["timestamp"] == "2026-06-01T09:00:00+00:00"
        assert {json.loads(request.body)["event"] for request in delivered} == set(ALERTS)

        # Two producers at once, with one new condition due: it is published once.
        publish(env, [event("asset.updated", 402, {"quantity": 2})])
        wait_until(lambda: projected(env), what="the projection to catch up")
        later = (NOW + timedelta(hours=1)).isoformat()
        runs = [
            subprocess.Popen(
                [str(ASSETHOOKS), "run", "alerts", "--once", "--now", later],
                env={**os.environ, **env.values},
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=60)[0] for run in runs]
        assert sum(int(out.strip().rsplit(": ", 1)[1].split(" sent")[0]) for out in outputs) == 1
        receiver.wait_for(5, "/alerts")

        # A restock arms low stock again; the next drop alerts again.
        publish(
            env, [event("asset.updated", 401, {"quantity": 8}), event("asset.updated", 401, {"quantity": 1})]
        )
        wait_until(lambda: projected(env), what="the projection to catch up")
        assert alerts_run(env, NOW + timedelta(hours=2)).endswith("1 sent, 4 already sent, 0 failed")
        receiver.wait_for(6, "/alerts")

    alerts = alert_events(env, len(HISTORY) + 3 + 6)
    assert sorted(item["data"]["alert_key"] for item in alerts) == [
        "low_stock:401:1",
        "low_stock:401:2",
        "low_stock:402:1",
        "maintenance:201:2026-06-05",
        f"overdue:301:{_checkout_position(env)}",
        "warranty:101:2026-06-20",
    ]
    shown = cli("assets", "show", "401", "--json", env=env.values)
    assert json.loads(shown.out)["stock_drops"] == 2


def _checkout_position(env: TestEnv) -> str:
    """The position of asset 301's checkout, which names its overdue condition."""
    for record in read_topic(env["kafka_bootstrap"], env["source_topic"], count=len(HISTORY)):
        body = json.loads(record.value() or b"{}")
        if body["event"] == "asset.checked_out" and body["asset_id"] == 301:
            return f"{record.partition()}-{record.offset()}"
    raise AssertionError("no checkout of asset 301")


def test_rebuilding_the_projection_from_the_start_gives_the_same_state(
    env: TestEnv, engine: Engine, tmp_path: Path
) -> None:
    publish(
        env,
        [
            *HISTORY,
            event("asset.updated", 401, {"quantity": 8}),
            event("asset.updated", 401, {"quantity": 1}),
        ],
    )
    with service("projector", env.values, tmp_path / "run.log"):
        wait_until(lambda: projected(env), what="the projection to catch up")
    before = all_states(engine)
    assert len(before) == 11
    rebuilt = cli("assets", "rebuild", "--yes", env=env.values)
    assert rebuilt.code == 0, rebuilt.err
    assert all_states(engine) == []
    with service("projector", env.values, tmp_path / "again.log"):
        wait_until(lambda: projected(env) and len(all_states(engine)) == 11, what="the rebuild")
    assert all_states(engine) == before


def test_the_alerts_loop_ends_its_wait_on_sigterm_and_exits_0(env: TestEnv, engine: Engine) -> None:
    """`run alerts --every` is a container's first process in docker-compose.yml; there SIGTERM has no default
    action, so the loop itself must end on it (docker stop would otherwise kill it after its grace period)."""
    with subprocess.Popen(
        [str(ASSETHOOKS), "run", "alerts", "--every", "1h"],
        env={**os.environ, **env.values},
        stdout=subprocess.PIPE,
        text=True,
    ) as loop:
        try:
            assert loop.stdout is not None
            first = loop.stdout.readline()  # the first run is done: the loop now waits an hour
            assert "0 sent, 0 already sent, 0 failed" in first
            loop.send_signal(signal.SIGTERM)
            assert loop.wait(timeout=20) == 0
        finally:
            loop.kill()
