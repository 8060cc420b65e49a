"""``assethooks webhooks …`` against a real store: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result

from assethooks.cli import main
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import DeliveryLogWriter, LogEntry, recent_entries
from tests.conftest import TestEnv


def run(store_env: TestEnv, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=store_env.values, input=stdin, catch_exceptions=False)


def listed(store_env: TestEnv) -> list[dict[str, Any]]:
    result = run(store_env, "webhooks", "list", "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_the_new_webhook_form_as_commands(store_env: TestEnv) -> None:
    created = run(
        store_env,
        "webhooks", "create",
        "--name", "Sync to ERP",
        "--url", "https://erp.example.com/hooks/assets",
        "--event", "asset.created",
        "--event", "asset.checked_out",
        "--secret", "erp-signing-secret",
        "--header", "X-Api-Key: erp-api-key",
        "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    hook = json.loads(created.stdout)
    assert hook["events"] == ["asset.created", "asset.checked_out"]
    assert hook["secret"] == "****"
    assert hook["headers"] == {"X-Api-Key": "****"}
    assert hook["active"] is True

    everything = run(
        store_env,
        "webhooks",
        "create",
        "--name",
        "Zapier",
        "--url",
        "http://zap.example.com/x",
        "--all-events",
        "--inactive",
    )
    assert everything.exit_code == 0
    assert "plain http" in everything.stderr

    assert [(row["name"], row["events"], row["active"]) for row in listed(store_env)] == [
        ("Sync to ERP", ["asset.created", "asset.checked_out"], True),
        ("Zapier", "all", False),
    ]
    table = run(store_env, "webhooks", "list")
    header, erp, zapier = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "URL", "EVENTS", "SECRET", "ACTIVE", "RATE", "FILTER", "HEALTH"]
    assert erp.endswith("yes     -     -       no deliveries yet")
    assert zapier.endswith("no      -     -       inactive")
    assert [row["health"]["state"] for row in listed(store_env)] == ["idle", "inactive"]

    shown = run(store_env, "webhooks", "show", str(hook["id"]))
    assert "X-Api-Key=****" in shown.stdout
    everything_said = (
        created.output + table.output + shown.output + run(store_env, "webhooks", "list", "--json").output
    )
    assert "erp-signing-secret" not in everything_said
    assert "erp-api-key" not in everything_said


def test_update_enable_disable_and_delete(store_env: TestEnv) -> None:
    run(
        store_env,
        "webhooks",
        "create",
        "--name",
        "ERP",
        "--url",
        "https://a.example.com",
        "--all-events",
        "--secret",
        "s1",
    )
    (hook,) = listed(store_env)
    hook_id = str(hook["id"])

    updated = run(
        store_env,
        "webhooks",
        "update",
        hook_id,
        "--url",
        "https://b.example.com",
        "--event",
        "asset.lost",
        "--no-secret",
        "--json",
    )
    assert updated.exit_code == 0, updated.output
    changed = json.loads(updated.stdout)
    assert (changed["url"], changed["events"], changed["secret"], changed["name"]) == (
        "https://b.example.com",
        ["asset.lost"],
        None,
        "ERP",
    )

    assert (
        run(store_env, "webhooks", "disable", hook_id).stdout.strip()
        == f"Webhook {hook_id} (ERP) is now inactive"
    )
    assert listed(store_env)[0]["active"] is False
    run(store_env, "webhooks", "enable", hook_id)
    assert listed(store_env)[0]["active"] is True

    refused = run(store_env, "webhooks", "delete", hook_id, stdin="n\n")
    assert refused.exit_code == 1
    assert len(listed(store_env)) == 1
    deleted = run(store_env, "webhooks", "delete", hook_id, "--yes")
    assert deleted.exit_code == 0
    assert listed(store_env) == []

    missing = run(store_env, "webhooks", "show", hook_id)
    assert missing.exit_code == 3
    assert missing.stderr == f"Error: no webhook with id {hook_id}\n"


BASE = ["webhooks", "create", "--name", "ERP", "--url", "https://erp.example.com/hook"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["webhooks", "create", "--name", "ERP", "--url", "erp.example.com", "--all-events"],
            "URL must start with http:// or https://",
        ),
        (["webhooks", "create", "--name", "ERP", "--url", "https://", "--all-events"], "URL has no host"),
        (
            [*BASE, "--event", "asset.sold"],
            "unknown event 'asset.sold'; valid events: asset.created, asset.updated,",
        ),
        (
            [*BASE, "--all-events", "--header", "Content-Type: text/plain"],
            "custom header 'Content-Type' would override a delivery header",
        ),
        (
            [*BASE, "--all-events", "--header", "X-Asset-Webhook-Signature: forged"],
            "would override a delivery header",
        ),
        (
            [*BASE, "--all-events", "--header", "Host: internal"],
            "custom header 'Host' would override a delivery header",
        ),
        ([*BASE, "--all-events", "--header", "no colon"], "must look like 'Name: value'"),
        (
            ["webhooks", "create", "--name", " ", "--url", "https://x.example.com", "--all-events"],
            "name must not be empty",
        ),
        (BASE, "choose events with --event NAME (repeatable) or --all-events"),
        ([*BASE, "--all-events", "--event", "asset.lost"], "use either --event or --all-events"),
    ],
)
def test_invalid_webhooks_are_refused_and_nothing_is_saved(
    store_env: TestEnv, args: list[str], message: str
) -> None:
    result = run(store_env, *args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    assert message in line
    assert listed(store_env) == []


def test_an_invalid_update_changes_nothing(store_env: TestEnv) -> None:
    run(store_env, *BASE, "--all-events")
    before = listed(store_env)
    result = run(
        store_env, "webhooks", "update", str(before[0]["id"]), "--url", "ftp://x", "--name", "Renamed"
    )
    assert result.exit_code == 2
    assert "URL must start with http:// or https://" in result.stderr
    assert _without_health(listed(store_env)) == _without_health(before)  # health is computed at each call


def _without_health(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: value for name, value in row.items() if name != "health"} for row in rows]


def test_commands_on_an_unmigrated_database_say_what_to_run(env: TestEnv, store_url: str) -> None:
    result = CliRunner().invoke(main, ["webhooks", "list"], env=env.with_(database_url=store_url).values)
    assert result.exit_code == 2  # a set-up step, not an outage
    assert result.stderr.strip().endswith("is empty: run `assethooks db upgrade`")


def test_the_delivery_log_writer_stores_what_the_database_could_refuse(store_env: TestEnv) -> None:
    """NUL characters (a binary Kafka key, an odd answer) would make PostgreSQL refuse the whole batch."""
    engine = make_engine(store_env["database_url"])

    async def write() -> None:
        writer = DeliveryLogWriter(engine)
        writer.start()
        committed: list[asyncio.Future[BaseException | None]] = []
        for number in range(3):
            committed.append(asyncio.get_running_loop().create_future())
            writer.write(odd_entry(number), committed[-1].set_result)
        assert await asyncio.gather(*committed) == [None, None, None]
        await writer.close()

    asyncio.run(write())
    logged = sorted(recent_entries(engine), key=lambda entry: entry.attempt)
    engine.dispose()
    assert [(entry.attempt, entry.asset_id, entry.response_body) for entry in logged] == [
        (number, "\ufffd\ufffd\ufffd{", "before\ufffdafter") for number in range(3)
    ]


def test_the_delivery_log_writer_writes_at_once_while_hurried(store_env: TestEnv) -> None:
    """A stop or a revocation waits for the log: it does not wait for a batch to gather."""
    engine = make_engine(store_env["database_url"])

    async def write() -> list[BaseException | None]:
        writer = DeliveryLogWriter(engine, interval=3600)  # a batch would gather for an hour
        writer.start()
        writer.hurry(True)
        committed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        writer.write(odd_entry(1), committed.set_result)
        outcome = await asyncio.wait_for(committed, 30)
        writer.hurry(False)
        await writer.close()
        return [outcome]

    assert asyncio.run(write()) == [None]
    assert len(recent_entries(engine)) == 1
    engine.dispose()


def odd_entry(attempt: int) -> LogEntry:
    return LogEntry(
        webhook_id=1,
        event="asset.created",
        asset_id="\x00\x00\x00{",
        delivery_id="d-1",
        attempt=attempt,
        success=False,
        status_code=500,
        duration_ms=1.0,
        error="HTTP 500",
        response_body="before\x00after",
        source_topic="asset-events",
        source_partition=0,
        source_offset=0,
        created_at=datetime.now(UTC),
    )
