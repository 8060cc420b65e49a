"""``assethooks status`` and ``GET /api/status`` against the real broker and store: the groups' lag before and
after their members run, the retry-tier backlog, the pending dead letters and the last alerts run; and a
broker that does not answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from assethooks import __version__
from assethooks.kafka import GroupView, Member, ensure_topics
from assethooks.operator.status import GroupSpec, group_status, partition_lag, service_status
from assethooks.store.db import make_engine
from assethooks.store.webhooks import WebhookStore
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import Receiver, cli, free_port, service, wait_until
from tests.test_admin import TOKEN, AdminServer, _serve

EVENTS = 5
ALERTS_AT = "2026-05-01T12:00:00+00:00"

# -- the pure part -------------------------------------------------------------------------------------


def test_lag_counts_from_the_committed_offset_or_from_the_start() -> None:
    assert partition_lag(7, 0, 10) == 3
    assert partition_lag(None, 4, 10) == 6  # nothing committed: everything kept is waiting
    assert partition_lag(2, 4, 10) == 6  # committed offset gone past retention: read from the start
    assert partition_lag(10, 0, 10) == 0
    assert partition_lag(11, 0, 10) == 0  # the end was read before a newer commit


def test_a_group_status_joins_members_offsets_and_watermarks() -> None:
    member = Member("m-1", "assethooks-retrier/x", "10.0.0.1", (("r.1s", 0), ("r.1s", 1)))
    view = GroupView("g", "Stable", (member,), {("r.1s", 0): 5})
    marks = {"r.1s": {0: (0, 5), 1: (2, 9)}}
    found = group_status(GroupSpec("retrier", "g", ("r.1s", "r.2s")), view, marks)
    assert [(p.partition, p.committed, p.lag, p.member_id) for p in found.partitions] == [
        (0, 5, 0, "m-1"),
        (1, None, 7, "m-1"),
    ]
    assert found.lag == found.lag_on("r.1s") == 7
    assert found.missing_topics == ("r.2s",)


# -- against the broker --------------------------------------------------------------------------------


def event_lines(count: int) -> str:
    lines = [
        {
            "event": "asset.created",
            "timestamp": "2026-11-28T12:00:00+00:00",
            "source": "perfex_assets_module",
            "asset_id": number,
            "asset": {"id": number, "name": f"Laptop {number}"},
            "data": {},
        }
        for number in range(1, count + 1)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines)


def status_json(env: TestEnv) -> dict[str, Any]:
    done = cli("status", "--json", env=env.values)
    assert done.code == 0, done.err
    found: dict[str, Any] = json.loads(done.out)
    return found


def partitions_of(group: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted((item["topic"], item["partition"]) for item in group["partitions"])


@contextmanager
def admin_server(env: TestEnv, tmp_path: Path) -> Iterator[AdminServer]:
    yield from _serve(env.with_(admin_token=TOKEN), tmp_path)


def test_status_follows_lag_retry_backlog_dead_letters_and_alerts(
    store_env: TestEnv, receiver: Receiver, tmp_path: Path
) -> None:
    env = store_env.with_(retry_schedule="1s,2s")  # two tiers; the third attempt is the last
    settings = env.settings()
    ensure_topics(settings)
    engine = make_engine(env["database_url"])
    try:
        run_the_scenario(env, engine, receiver, tmp_path)
    finally:
        engine.dispose()


def run_the_scenario(env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path) -> None:
    settings = env.settings()
    source, tiers = env["source_topic"], list(settings.retry_topics)
    webhooks = WebhookStore(engine)
    webhooks.create(validate_webhook(name="ok", url=receiver.url("/ok"), events=None))
    webhooks.create(validate_webhook(name="failing", url=receiver.url("/fail"), events=None))
    receiver.plan("/fail", then=500)
    published = cli("publish", "--file", "-", env=env.values, stdin=event_lines(EVENTS))
    assert published.code == 0, published.err

    # Nobody has read anything yet: every record of the source topic waits, for both of its groups.
    before = status_json(env)
    assert set(before) == {"groups", "retry_backlog", "dead_letters", "last_alerts_run"}
    dispatcher = before["groups"]["dispatcher"]
    assert (dispatcher["state"], dispatcher["members"], dispatcher["lag"]) == ("Dead", [], EVENTS)
    assert partitions_of(dispatcher) == [(source, p) for p in range(3)]
    assert all(item["committed"] is None and item["member_id"] is None for item in dispatcher["partitions"])
    assert before["groups"]["projector"]["lag"] == EVENTS
    assert before["groups"]["retrier"]["lag"] == 0
    assert partitions_of(before["groups"]["retrier"]) == [(tier, p) for tier in tiers for p in range(3)]
    assert [tier["topic"] for tier in before["retry_backlog"]["tiers"]] == tiers
    assert before["retry_backlog"]["waiting"] == 0
    assert before["dead_letters"] == {"pending": 0, "exact": True}
    assert before["last_alerts_run"] is None

    def now_if(ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        found = service_status(settings, engine).plain()
        return found if ready(found) else None

    with service("dispatcher", env.values, tmp_path / "dispatcher.log") as running:
        running.wait_assigned()
        # The dispatcher reads everything; the failed first attempts wait on the first tier, unread.
        caught_up = wait_until(
            lambda: now_if(
                lambda found: (
                    found["groups"]["dispatcher"]["lag"] == 0 and found["retry_backlog"]["waiting"] == EVENTS
                )
            ),
            what="the dispatcher to catch up and the failures to reach the first tier",
        )
        assert len(receiver.delivered("/ok")) == EVENTS
        dispatcher = caught_up["groups"]["dispatcher"]
        assert dispatcher["state"] == "Stable"
        (member,) = dispatcher["members"]
        assert member["client_id"] == f"assethooks-dispatcher/{__version__}"
        assert member["host"] == "127.0.0.1"
        assert sorted((item["topic"], item["partition"]) for item in member["partitions"]) == [
            (source, p) for p in range(3)
        ]
        assert {item["member_id"] for item in dispatcher["partitions"]} == {member["member_id"]}
        # A partition that never had a record has nothing committed, and nothing waiting either.
        assert [item["committed"] or 0 for item in dispatcher["partitions"]] == [
            item["end"] for item in dispatcher["partitions"]
        ]
        assert sum(item["end"] for item in dispatcher["partitions"]) == EVENTS
        assert [tier["waiting"] for tier in caught_up["retry_backlog"]["tiers"]] == [EVENTS, 0]
        assert caught_up["groups"]["retrier"]["lag"] == EVENTS
        assert caught_up["groups"]["projector"]["lag"] == EVENTS  # not running

        shown = cli("status", env=env.values)
        assert shown.code == 0, shown.err
        lines = shown.out.splitlines()
        assert f"dispatcher (group {env['dispatcher_group']}): Stable, 1 member, lag 0" in lines
        assert f"retrier (group {env['retrier_group']}): Dead, no members, lag {EVENTS}" in lines
        assert f"retry backlog: {EVENTS} tasks waiting on 2 tiers" in lines
        assert "dead letters: 0 pending" in lines
        assert "last alerts run: never" in lines

        with service("retrier", env.values, tmp_path / "retrier.log"):
            # Attempts 2 and 3 fail too: every delivery ends in the dead-letter topic.
            drained = wait_until(
                lambda: now_if(
                    lambda found: (
                        found["retry_backlog"]["waiting"] == 0
                        and found["dead_letters"]["pending"] == EVENTS
                        and bool(found["groups"]["retrier"]["members"])
                    )
                ),
                timeout=60,
                what="the retries to end in dead letters",
            )
            retrier = drained["groups"]["retrier"]
            assert retrier["state"] == "Stable"
            assert retrier["lag"] == 0
            (member,) = retrier["members"]
            assert sorted((item["topic"], item["partition"]) for item in member["partitions"]) == [
                (tier, p) for tier in tiers for p in range(3)
            ]
            assert len(receiver.requests("/fail")) == EVENTS * 3

            alerts = cli("run", "alerts", "--once", "--now", ALERTS_AT, env=env.values)
            assert alerts.code == 0, alerts.err
            after = status_json(env)
            run = after["last_alerts_run"]
            assert (run["at"], run["due"], run["sent"], run["already"], run["failed"]) == (
                ALERTS_AT,
                0,
                0,
                0,
                0,
            )
            assert run["finished_at"] >= run["at"]  # the run took place now, not at ALERTS_AT
            shown = cli("status", env=env.values)
            assert f"last alerts run: for {ALERTS_AT}, finished " in shown.out
            assert f"dead letters: {EVENTS} pending" in shown.out.splitlines()

            # Nothing moves any more: the API answers what the CLI printed.
            with admin_server(env, tmp_path) as admin:
                answer = admin.call("GET", "/api/status")
                assert answer.status == 200, answer.text
                assert answer.body == status_json(env)
                assert admin.call("GET", "/api/status", token=None).status == 401

    # Both stopped: the groups are empty and keep their offsets.
    stopped = status_json(env)
    for role in ("dispatcher", "retrier"):
        group = stopped["groups"][role]
        assert (group["state"], group["members"], group["lag"]) == ("Empty", [], 0), role
        assert all(item["member_id"] is None for item in group["partitions"])


def test_a_broker_that_does_not_answer_is_one_line_exit_4_and_a_503(
    env: TestEnv, engine: Engine, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    away = env.with_(kafka_bootstrap=address)
    done = cli("status", env=away.values, timeout=30)
    assert done.code == 4
    assert done.seconds < 10
    line = done.err.strip()
    assert line.splitlines() == [line]
    assert line.startswith(f"Error: cannot reach Kafka at {address}")
    assert done.out == ""

    with admin_server(away, tmp_path) as admin:
        answer = admin.call("GET", "/api/status")
        assert answer.status == 503
        assert answer.body == {"error": line.removeprefix("Error: ")}
