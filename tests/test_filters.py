"""Payload filters (JMESPath): what they accept, how the subscriptions compile them, the CLI saving and
refusing them, and, against the real broker with a receiver on loopback, the dispatcher and a replay
honouring them."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from assethooks.cli import main
from assethooks.store.delivery_log import LogQuery, query_attempts
from assethooks.store.webhooks import WebhookStore
from consumers.subscriptions import compile_filters, routes_by_event
from producers.events import EventPublisher
from schemas.filters import PayloadFilter, is_true, split_by_filters
from schemas.webhooks import Webhook, validate_webhook
from tests.conftest import TestEnv
from tests.support import Receiver, cli, committed_to_end, free_port, service, wait_until

NOON = "2026-11-30T12:00:00Z"
LISBON_LAPTOPS = "data.location == 'Lisbon' && asset.category == 'Laptops'"


def event(
    number: int, location: Any, category: str = "Laptops", tags: Any = (), name: str = "asset.checked_out"
) -> dict[str, Any]:
    return {
        "event": name,
        "timestamp": "2026-11-30T12:00:00+00:00",
        "source": "tests",
        "asset_id": number,
        "asset": {"id": number, "category": category},
        "data": {"n": number, "location": location, "tags": list(tags) if isinstance(tags, tuple) else tags},
    }


# -- the rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (0, True),
        ("x", True),
        ([0], True),
    ],
)
def test_truth_is_jmespaths_not_pythons(value: Any, truthy: bool) -> None:
    assert is_true(value) is truthy


def test_a_filter_accepts_rejects_and_fails_closed_without_raising() -> None:
    lisbon = PayloadFilter(1, LISBON_LAPTOPS)
    assert lisbon.accepts(event(1, "Lisbon"))
    assert not lisbon.accepts(event(2, "Porto"))
    assert not lisbon.accepts(event(3, "Lisbon", "Chairs"))
    assert not lisbon.accepts({"no": "data"})  # a missing field is null: not delivered
    numbers = PayloadFilter(2, "data.location > `5`")
    assert numbers.accepts(event(5, 6))
    assert not numbers.accepts(event(4, None))  # null (or true, a list) compared to a number: null
    assert numbers.failed == 0
    assert not numbers.accepts(event(4, "Lisbon"))  # a string against a number raises in jmespath: rejected
    assert numbers.failed == 1
    text = PayloadFilter(4, "data.location > '5'")
    assert not text.accepts(event(8, "10"))  # two strings compare as text: '10' < '5'
    tagged = PayloadFilter(3, "length(data.tags) > `0`")
    assert tagged.accepts(event(6, "Lisbon", tags=("a",)))
    assert not tagged.accepts(event(7, "Lisbon", tags=5))  # length() of a number raises: rejected
    assert tagged.failed == 1


def test_the_body_is_split_once_for_every_subscriber() -> None:
    lisbon, porto = PayloadFilter(1, LISBON_LAPTOPS), PayloadFilter(2, "data.location == 'Porto'")
    body = json.dumps(event(1, "Lisbon")).encode()
    assert split_by_filters(["a", "b", "c"], [lisbon, porto, None], body) == (["a", "c"], ["b"])
    assert split_by_filters(["a", "b"], [lisbon, None], b"{not json") == (["b"], ["a"])


def hook(webhook_id: int, expression: str | None, events: list[str] | None = None) -> Webhook:
    spec = validate_webhook(
        name=f"w{webhook_id}", url="https://example.com/h", events=events, filter=expression
    )
    return Webhook.model_validate(
        {**spec.model_dump(), "id": webhook_id, "created_at": NOON, "updated_at": NOON}
    )


def test_filters_compile_once_per_webhook_version() -> None:
    first = compile_filters([hook(1, LISBON_LAPTOPS), hook(2, None)], {})
    assert set(first) == {1}
    again = compile_filters([hook(1, LISBON_LAPTOPS)], first)
    assert again[1] is first[1]  # unchanged expression: the compiled filter is kept
    changed = compile_filters([hook(1, "data.location == 'Porto'")], again)
    assert changed[1] is not first[1]
    assert changed[1].accepts(event(1, "Porto"))


def test_routes_carry_filters_only_where_a_subscriber_has_one() -> None:
    plain, filtered = hook(1, None), hook(2, LISBON_LAPTOPS, ["asset.checked_out"])
    by_event = {"asset.created": (plain,), "asset.checked_out": (plain, filtered)}
    routes = routes_by_event(by_event, compile_filters([plain, filtered], {}))
    assert routes["asset.created"] == ((plain,), None)  # the hot path: nothing to evaluate
    webhooks, filters = routes["asset.checked_out"]
    assert webhooks == (plain, filtered)
    assert filters is not None
    assert filters[0] is None
    assert filters[1] is not None


# -- the CLI -------------------------------------------------------------------------------------------


def run(store_env: TestEnv, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=store_env.values, catch_exceptions=False)


def shown(store_env: TestEnv, webhook_id: int) -> dict[str, Any]:
    result = run(store_env, "webhooks", "show", str(webhook_id), "--json")
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


BASE = (
    "webhooks",
    "create",
    "--name",
    "Lisbon laptops",
    "--url",
    "https://erp.example.com/h",
    "--all-events",
)


def test_the_cli_saves_changes_and_removes_a_filter_and_a_rate_limit(store_env: TestEnv) -> None:
    created = run(store_env, *BASE, "--filter", LISBON_LAPTOPS, "--rate-limit", "20/s", "--json")
    assert created.exit_code == 0, created.output
    webhook_id = json.loads(created.stdout)["id"]
    assert {k: shown(store_env, webhook_id)[k] for k in ("filter", "rate_limit")} == {
        "filter": LISBON_LAPTOPS,
        "rate_limit": "20/s",
    }
    table = run(store_env, "webhooks", "list").stdout.splitlines()
    assert table[0].split()[6:8] == ["RATE", "FILTER"]
    assert "20/s  data.location == 'Lisbon' && asset.cate…" in table[1]

    assert run(store_env, "webhooks", "update", str(webhook_id), "--rate-limit", "50 / min").exit_code == 0
    assert shown(store_env, webhook_id)["rate_limit"] == "50/m"
    assert shown(store_env, webhook_id)["filter"] == LISBON_LAPTOPS  # not given: unchanged
    removed = run(store_env, "webhooks", "update", str(webhook_id), "--filter", "", "--rate-limit", "")
    assert removed.exit_code == 0, removed.output
    assert {k: shown(store_env, webhook_id)[k] for k in ("filter", "rate_limit")} == {
        "filter": None,
        "rate_limit": None,
    }


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--filter", "data.location == ", "Error: filter is not a valid JMESPath expression: "),
        ("--filter", "data.location = 'Lisbon'", "Error: filter is not a valid JMESPath expression: "),
        ("--filter", "x" * 1001, "Error: a filter is at most 1000 characters"),
        ("--filter", "!" * 999 + "a", "Error: filter is nested too deeply"),
        ("--rate-limit", "fast", "Error: rate_limit: rate limit 'fast' is not a rate such as 20/s or 50/m"),
        ("--rate-limit", "0/s", "a rate limit allows 1 to 100,000 deliveries per second or minute"),
    ],
)
def test_the_cli_refuses_a_bad_filter_or_rate_in_one_line_and_saves_nothing(
    store_env: TestEnv, option: str, value: str, message: str
) -> None:
    refused = run(store_env, *BASE, option, value)
    assert refused.exit_code == 2
    (line,) = refused.stderr.splitlines()
    assert message in line
    assert json.loads(run(store_env, "webhooks", "list", "--json").stdout) == []

    saved = run(store_env, *BASE, "--filter", LISBON_LAPTOPS, "--json")
    webhook_id = json.loads(saved.stdout)["id"]
    before = shown(store_env, webhook_id)
    again = run(store_env, "webhooks", "update", str(webhook_id), option, value, "--name", "Renamed")
    assert again.exit_code == 2
    assert message in again.stderr.strip()
    assert shown(store_env, webhook_id)["name"] == before["name"] == "Lisbon laptops"
    assert shown(store_env, webhook_id)["filter"] == LISBON_LAPTOPS


# -- the dispatcher and a replay, against the real broker -------------------------------------------


def add(
    engine: Engine, name: str, url: str, expression: str | None = None, events: list[str] | None = None
) -> int:
    spec = validate_webhook(name=name, url=url, events=events, filter=expression)
    return WebhookStore(engine).create(spec).id


def publish(env: TestEnv, events: list[dict[str, Any]]) -> None:
    with EventPublisher(env.settings()) as publisher:
        for body in events:
            assert publisher.publish(json.dumps(body).encode())
    assert publisher.report.failed == []


def filtered_counts(port: int) -> dict[str, float]:
    """``assethooks_filtered_total`` per webhook id (as a string), empty while the port does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    counts = {}
    for line in text.splitlines():
        if line.startswith('assethooks_filtered_total{webhook="'):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('"')[1]] = float(value)
    return counts


def numbers(receiver: Receiver, path: str) -> list[int]:
    return sorted(json.loads(request.body)["data"]["n"] for request in receiver.requests(path))


def test_the_dispatcher_and_a_replay_deliver_only_what_a_filter_accepts(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    everything = add(engine, "Every checkout", receiver.url("/all"), events=["asset.checked_out"])
    lisbon = add(engine, "Lisbon laptops", receiver.url("/lisbon"), LISBON_LAPTOPS)
    tagged = add(engine, "Tagged", receiver.url("/tagged"), "length(data.tags) > `0`")
    events = [
        event(1, "Lisbon"),
        event(2, "Porto"),
        event(3, "Lisbon", "Chairs"),
        event(4, "Lisbon", tags=("new",)),
        event(5, 5, tags=7),  # location a number: null; length() of a number: the filter fails, rejects
        event(6, "Lisbon"),
        event(7, "Porto", name="asset.lost"),  # only filtered webhooks subscribe; both reject it
    ]
    publish(env, events)
    port = free_port()
    with service("all", env.values, tmp_path / "run.log", "--metrics-port", str(port)) as running:
        receiver.wait_for(6, "/all")
        wait_until(lambda: numbers(receiver, "/lisbon") == [1, 4, 6], what="the Lisbon laptops delivered")
        wait_until(lambda: numbers(receiver, "/tagged") == [4], what="the tagged event delivered")
        expected = {str(lisbon): 4.0, str(tagged): 6.0}
        wait_until(lambda: filtered_counts(port) == expected, what=lambda: f"{filtered_counts(port)}")
        wait_until(lambda: len(query_attempts(engine, LogQuery(limit=None))) == 6 + 3 + 1, what="10 log rows")
        # every record completed, the one whose every match was filtered out too
        wait_until(
            lambda: committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"]),
            what="the dispatcher group committed to the end",
        )
        assert running.output().count("filter of webhook") == 1  # the failing filter said so, once

        replayed = cli("replay", "--from", "2000-01-01T00:00:00Z", env=env.values)
        assert replayed.code == 0, replayed.err
        lines = replayed.out.strip().splitlines()
        assert lines[-1] == (
            "read 7 records (0 invalid), 7 events matched; queued 10 deliveries; 10 events filtered out"
        )
        assert lines[0].split() == ["WEBHOOK", "DELIVERIES", "FILTERED", "OUT"]
        assert [line.split() for line in lines[1:4]] == [
            [str(everything), "6", "0"],
            [str(lisbon), "3", "4"],
            [str(tagged), "1", "6"],
        ]
        receiver.wait_for(12, "/all")
        wait_until(lambda: numbers(receiver, "/lisbon") == [1, 1, 4, 4, 6, 6], what="Lisbon replayed")
        wait_until(lambda: numbers(receiver, "/tagged") == [4, 4], what="the tagged event replayed")
    by_webhook: dict[int, list[str]] = {}
    for entry in query_attempts(engine, LogQuery(limit=None)):
        by_webhook.setdefault(entry.webhook_id, []).append(entry.delivery_id)
    assert len(by_webhook[everything]) == 12
    assert len(by_webhook[lisbon]) == 6
    assert len(set(by_webhook[lisbon])) == 3  # no row for a rejected event
    assert len(by_webhook[tagged]) == 2
    assert numbers(receiver, "/lisbon") == [1, 1, 4, 4, 6, 6]  # nothing else arrived meanwhile
