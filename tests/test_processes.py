"""``run … --processes N``: members of the same groups under one supervisor, against the real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine

from assethooks.store.webhooks import WebhookStore
from consumers.supervisor import member_count, merge_metrics
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import Receiver, cli, free_port, service, wait_until


def publish(env: TestEnv, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"], "linger.ms": 5})
    for number in range(first, first + count):
        event = {
            "event": "asset.updated",
            "timestamp": "2026-11-28T12:00:00+00:00",
            "source": "tests",
            "asset_id": number,
            "asset": {"id": number},
            "data": {"seq": number},
        }
        producer.produce(env["source_topic"], json.dumps(event).encode(), key=str(number).encode())
    assert producer.flush(30) == 0


def delivered_by_member(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.findall(r'assethooks_deliveries_total\{member="(\d+)",outcome="delivered"\} (\S+)', text)
    return {member: float(value) for member, value in found}


def counted(by_member: dict[str, float], total: int) -> dict[str, float] | None:
    return by_member if sum(by_member.values()) >= total else None


def sharing(env: TestEnv) -> bool:
    """True when the dispatcher group has two members and each owns partitions."""
    admin = AdminClient({"bootstrap.servers": env["kafka_bootstrap"]})
    group = env["dispatcher_group"]
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return False
    owned = [len(member.assignment.topic_partitions) for member in described.members]
    return len(owned) == 2 and all(owned)


def test_two_members_both_deliver_and_a_killed_one_loses_nothing(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    WebhookStore(engine).create(validate_webhook(name="all", url=receiver.url("/all"), events=None))
    port = free_port()

    def ids() -> set[str]:
        return {request.header("X-Asset-Webhook-Delivery") or "" for request in receiver.requests("/all")}

    args = ("--processes", "2", "--metrics-port", str(port))
    with service("dispatcher", env.values, tmp_path / "run.log", *args) as run:
        wait_until(lambda: sharing(env), timeout=90, what="both members to own partitions")
        publish(env, 0, 300)
        wait_until(lambda: len(ids()) == 300, timeout=90, what="300 deliveries")
        by_member = wait_until(lambda: counted(delivered_by_member(port), 300), what="both members' metrics")
        assert set(by_member) == {"0", "1"}
        assert all(count > 0 for count in by_member.values()), by_member  # the group shares the work

        # kill -9 one member: the supervisor starts it again; nothing published meanwhile is lost
        pid = int(re.findall(r"member 1 started \(pid (\d+)\)", run.output())[-1])
        os.kill(pid, signal.SIGKILL)
        publish(env, 300, 300)
        wait_until(lambda: len(ids()) == 600, timeout=120, what="600 deliveries after the kill")
        wait_until(
            lambda: len(re.findall(r"member 1 started", run.output())) == 2, what="member 1 to be restarted"
        )
        assert "member 1 exited with -9" in run.output()
        code = run.stop()
    assert code == 0
    assert "Traceback" not in run.output()


def test_processes_must_be_a_count_or_auto(env: TestEnv) -> None:
    for wrong in ("0", "-1", "two"):
        result = cli("run", "dispatcher", "--processes", wrong, env=env.values)
        assert result.code == 2
        (line,) = result.err.strip().splitlines()
        assert "--processes" in line
    assert member_count("auto") >= 1
    assert member_count("3") == 3


@pytest.mark.parametrize("empty", ["", "# HELP x y\n"])
def test_members_metrics_merge_with_a_member_label(empty: str) -> None:
    one = (
        "# HELP assethooks_deliveries_total Delivery attempts by outcome\n"
        "# TYPE assethooks_deliveries_total counter\n"
        'assethooks_deliveries_total{outcome="delivered"} 3.0\n'
        "# HELP up Up\n# TYPE up gauge\nup 1.0\n"
    )
    merged = merge_metrics([("0", one), ("1", one.replace("3.0", "4.0")), ("2", empty)])
    assert merged.count("# TYPE assethooks_deliveries_total counter") == 1
    assert 'assethooks_deliveries_total{member="0",outcome="delivered"} 3.0' in merged
    assert 'assethooks_deliveries_total{member="1",outcome="delivered"} 4.0' in merged
    assert 'up{member="1"} 1.0' in merged
    lines = merged.splitlines()
    assert lines.index("# TYPE up gauge") < lines.index('up{member="0"} 1.0')
