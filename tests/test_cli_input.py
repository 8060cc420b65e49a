"""Bad input and outside text at the CLI: every bad argument is one line on stderr with its exit code,
never a traceback; text from outside is printed escaped."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Producer
from sqlalchemy import Engine

from assethooks.cli import main
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import LogEntry, insert_entries
from schemas.tasks import (
    AttemptRecord,
    DeadLetter,
    DeadLetterKind,
    DeliveryTask,
    SourceRef,
    dead_letter_headers,
)
from tests.conftest import TestEnv
from tests.support import ASSETHOOKS, Answer, Receiver, cli

MAX_ID = 2**63 - 1  # log entries and dead letters
MAX_WEBHOOK_ID = 2**31 - 1  # webhooks.id is INTEGER
TOO_BIG = str(2**63)
# Text a receiver or an upstream system could send: a screen clear, a window title, a bell, a bidi override.
HOSTILE = "ok\x1b[2J\x1b]0;pwned\x07 \u202etxt.exe"
HOSTILE_SHOWN = "ok\\x1b[2J\\x1b]0;pwned\\x07 \\u202etxt.exe"


def run(on: TestEnv, *args: str) -> Result:
    # catch_exceptions=False: a traceback fails the test instead of becoming an exit code.
    return CliRunner().invoke(main, list(args), env=on.values, catch_exceptions=False)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def no_terminal_controls(text: str) -> bool:
    return "\x1b" not in text and "\x07" not in text and "\u202e" not in text


# -- ids and limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["webhooks", "show", TOO_BIG],
        ["webhooks", "update", TOO_BIG, "--name", "x"],
        ["webhooks", "delete", TOO_BIG, "--yes"],
        ["webhooks", "enable", TOO_BIG],
        ["webhooks", "disable", TOO_BIG],
        ["webhooks", "test", TOO_BIG],
        ["webhooks", "rotate-secret", TOO_BIG, "--generate-secret"],
        ["logs", "show", TOO_BIG],
        ["logs", "retry", TOO_BIG],
        ["logs", "--webhook", TOO_BIG],
        ["logs", "retry", "--webhook", TOO_BIG],
        ["dlq", "show", TOO_BIG],
        ["dlq", "replay", "1", TOO_BIG],
        ["dlq", "purge", TOO_BIG, "--yes"],
        ["dlq", "list", "--webhook", TOO_BIG],
        ["replay", "--from", "1h", "--webhook", TOO_BIG],
        ["webhooks", "show", str(MAX_WEBHOOK_ID + 1)],
        ["logs", "--webhook", str(MAX_WEBHOOK_ID + 1)],
        ["webhooks", "show", "0"],
        ["webhooks", "show", "--", "-5"],
        ["webhooks", "show", "1e3"],
        ["webhooks", "show", "\uff11\uff12"],  # fullwidth digits: int() would take them
        ["logs", "show", "9" * 5000],  # more digits than int() converts
    ],
)
def test_ids_out_of_range_are_refused_before_any_lookup(store_env: TestEnv, args: list[str]) -> None:
    line = one_error_line(run(store_env, *args), 2)
    assert line.endswith(
        (
            f" is not an id: use a whole number from 1 to {MAX_ID}",
            f" is not a webhook id: use a whole number from 1 to {MAX_WEBHOOK_ID}",
        )
    ), line


@pytest.mark.parametrize(
    "args",
    [
        ["logs", "--limit", TOO_BIG],
        ["logs", "--limit", "-1"],
        ["logs", "--limit", "0"],
        ["logs", "retry", "--webhook", "1", "--limit", "-1"],
        ["dlq", "list", "--limit", "-1"],
        ["dlq", "list", "--limit", TOO_BIG],
    ],
)
def test_limits_are_at_least_one(store_env: TestEnv, args: list[str]) -> None:
    line = one_error_line(run(store_env, *args), 2)
    assert line.startswith("Error: Invalid value for '--limit': ")
    assert line.endswith(f" is not a limit: use a whole number from 1 to {MAX_ID}")


def test_the_largest_id_is_well_formed_and_simply_not_found(store_env: TestEnv) -> None:
    biggest, hook = str(MAX_ID), str(MAX_WEBHOOK_ID)
    for args, message in [
        (["webhooks", "show", hook], f"Error: no webhook with id {hook}"),
        (["webhooks", "delete", hook, "--yes"], f"Error: no webhook with id {hook}"),
        (["logs", "show", biggest], f"Error: no delivery log entry with id {biggest}"),
        (["dlq", "show", biggest], f"Error: no dead letter with id {biggest}"),
    ]:
        assert one_error_line(run(store_env, *args), 3) == message
    listed = run(store_env, "logs", "--webhook", hook, "--limit", biggest)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[-1] == "0 attempts"


def test_usage_errors_are_one_line_too(store_env: TestEnv) -> None:
    assert (
        one_error_line(run(store_env, "webhooks", "show", "abc"), 2)
        == "Error: Invalid value for 'WEBHOOK_ID': 'abc' is not a webhook id: use a whole number from 1 to "
        f"{MAX_WEBHOOK_ID}"
    )
    assert (
        one_error_line(run(store_env, "logs", "--bogus"), 2)
        == "Error: No such option '--bogus'. (see 'main logs --help')"
    )
    assert one_error_line(run(store_env, "webhooks", "frobnicate"), 2).startswith(
        "Error: No such command 'frobnicate'."
    )


# -- durations and times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["logs", "purge", "--older-than", "99999999999d"],
            "Error: duration too long: '99999999999d' (at most 36500d)",
        ),
        (
            ["logs", "--since", "0001-01-01T00:00:00+23:59"],
            "Error: time out of range: '0001-01-01T00:00:00+23:59' (years 1900 to 8999)",
        ),
        (
            ["logs", "--until", "9999-12-31T23:59:59-23:59"],
            "Error: time out of range: '9999-12-31T23:59:59-23:59' (years 1900 to 8999)",
        ),
        (
            ["logs", "--since", "99999999999d"],
            "Error: not a time: '99999999999d' is too long ago (at most 36500d)",
        ),
        (
            ["logs", "retry", "--since", "0001-01-01T00:00:00+23:59"],
            "Error: time out of range: '0001-01-01T00:00:00+23:59' (years 1900 to 8999)",
        ),
        (
            ["dlq", "list", "--since", "0001-01-01T00:00:00+23:59"],
            "Error: time out of range: '0001-01-01T00:00:00+23:59' (years 1900 to 8999)",
        ),
        (
            ["replay", "--from", "0001-01-01T00:00:00+23:59"],
            "Error: time out of range: '0001-01-01T00:00:00+23:59' (years 1900 to 8999)",
        ),
        (
            ["logs", "--since", "9" * 400 + "s"],
            f"Error: not a time: '{'9' * 39}…' is too long ago (at most 36500d)",
        ),
    ],
)
def test_extreme_durations_and_times_are_refused(store_env: TestEnv, args: list[str], message: str) -> None:
    assert one_error_line(run(store_env, *args), 2) == message


def test_an_extreme_grace_period_is_refused(store_env: TestEnv) -> None:
    created = run(
        store_env, "webhooks", "create", "--name", "ERP", "--url", "https://erp.example.com", "--all-events",
        "--secret", "old",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    refused = run(store_env, "webhooks", "rotate-secret", "1", "--secret", "new", "--grace", "999999999999d")
    assert one_error_line(refused, 2) == "Error: duration too long: '999999999999d' (at most 36500d)"
    longest = run(store_env, "webhooks", "rotate-secret", "1", "--secret", "new", "--grace", "36500d")
    assert longest.exit_code == 0, longest.output


def test_a_duration_setting_too_long_for_any_clock_is_named(env: TestEnv) -> None:
    result = cli("config", env=env.with_(spill_after="9" * 400).values)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"Error: ASSETHOOKS_SPILL_AFTER: duration too long: '{'9' * 39}…' (at most 36500d)"
    ]


def test_alerts_refuse_a_time_out_of_range_as_a_process(env: TestEnv) -> None:
    result = cli("run", "alerts", "--once", "--now", "0001-01-01T00:00:00+23:59", env=env.values)
    assert result.code == 2
    assert result.err.splitlines() == [
        "Error: --now: time out of range: '0001-01-01T00:00:00+23:59' (years 1900 to 8999)"
    ]


# -- arguments that are not UTF-8 ----------------------------------------------------------------------

CREATE = [b"webhooks", b"create", b"--url", b"https://erp.example.com/hook", b"--all-events"]


def run_bytes(*args: bytes, env: TestEnv, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``assethooks ARGS`` as a real process whose arguments are raw bytes, as a shell passes them."""
    return subprocess.run(
        [bytes(ASSETHOOKS), *args],
        env={**os.environ, **env.values},
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*CREATE, b"--name", b"\xff"], "Invalid value for '--name': not UTF-8 text (byte 0xff)"),
        (
            [*CREATE, b"--name", b"ERP", b"--secret", b"s\xe9cret"],
            "Invalid value for '--secret': not UTF-8 text (byte 0xe9)",
        ),
        (
            [*CREATE, b"--name", b"ERP", b"--header", b"X-Api-Key: \xfe\xfe"],
            "Invalid value for '--header': not UTF-8 text (byte 0xfe)",
        ),
        (
            [b"webhooks", b"update", b"1", b"--name", b"\xc3"],
            "Invalid value for '--name': not UTF-8 text (byte 0xc3)",
        ),
        ([b"logs", b"--event", b"asset.\xff"], "Invalid value for '--event': not UTF-8 text (byte 0xff)"),
        ([b"logs", b"--asset", b"\x80"], "Invalid value for '--asset': not UTF-8 text (byte 0x80)"),
        ([b"dlq", b"list", b"--reason", b"\xff"], "Invalid value for '--reason': not UTF-8 text (byte 0xff)"),
        ([b"assets", b"show", b"\xff"], "Invalid value for 'ASSET_ID': not UTF-8 text (byte 0xff)"),
        (
            [b"publish", b"--json", b'{"event": "\xff"}'],
            "Invalid value for '--json': not UTF-8 text (byte 0xff)",
        ),
        (
            [b"publish", b"--event", b"asset.created", b"--asset-id", b"1", b"--data", b'{"n": "\xff"}'],
            "Invalid value for '--data': not UTF-8 text (byte 0xff)",
        ),
        (
            [b"replay", b"--from", b"1h", b"--asset", b"\xff"],
            "Invalid value for '--asset': not UTF-8 text (byte 0xff)",
        ),
    ],
)
def test_arguments_that_are_not_utf8_get_one_line_and_nothing_is_saved(
    env: TestEnv, engine: Engine, args: list[bytes], message: str
) -> None:
    before = cli("webhooks", "list", "--json", env=env.values).out
    done = run_bytes(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().splitlines() == [f"Error: {message}"]
    assert done.stdout == b""
    assert cli("webhooks", "list", "--json", env=env.values).out == before


def test_a_secret_from_stdin_that_is_not_utf8_is_refused(env: TestEnv, engine: Engine) -> None:
    done = run_bytes(*CREATE, b"--name", b"ERP", b"--secret", b"-", env=env, stdin=b"s\xffcret\n")
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == ["Error: the secret read from stdin is not UTF-8 text"]
    assert json.loads(cli("webhooks", "list", "--json", env=env.values).out) == []


def test_a_file_name_may_be_any_bytes(env: TestEnv, engine: Engine, tmp_path: Path) -> None:
    event = (
        '{"event":"asset.created","timestamp":"2025-02-04T12:00:00+00:00","source":"perfex_assets_module",'
        '"asset_id":5,"asset":{"id":5},"data":{}}'
    )
    name = bytes(tmp_path) + b"/events-\xff.jsonl"
    with open(name, "wb") as file:
        file.write(event.encode() + b"\n")
    done = run_bytes(b"publish", b"--file", name, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == f"published 1 of 1 event to {env['source_topic']}"


# -- outside text in human output ----------------------------------------------------------------------


def test_the_answer_of_a_test_delivery_is_printed_escaped(
    env: TestEnv, engine: Engine, receiver: Receiver
) -> None:
    receiver.plan("/odd", then=Answer(200, {}, HOSTILE))
    created = cli(
        "webhooks", "create", "--name", "Odd", "--url", receiver.url("/odd"), "--all-events", "--json",
        env=env.values,
    )  # fmt: skip
    hook = json.loads(created.out)
    result = cli("webhooks", "test", str(hook["id"]), env=env.values)
    assert result.code == 0, result.err
    assert no_terminal_controls(result.out)
    assert result.out.splitlines()[-1] == HOSTILE_SHOWN


def test_logged_answers_and_errors_are_printed_escaped_and_json_stays_exact(store_env: TestEnv) -> None:
    store = make_engine(store_env["database_url"])
    insert_entries(
        store,
        [
            LogEntry(
                webhook_id=1,
                event="asset.created",
                asset_id="7\x1b[8m",
                delivery_id="d-odd",
                attempt=1,
                success=False,
                status_code=500,
                duration_ms=3.0,
                error=f"HTTP 500: {HOSTILE}",
                response_body=f"first line\n{HOSTILE}\r\nlast line",
                source_topic="asset-events",
                source_partition=0,
                source_offset=0,
                created_at=datetime.now(UTC),
            )
        ],
    )
    store.dispose()
    table = run(store_env, "logs")
    assert table.exit_code == 0, table.output
    assert no_terminal_controls(table.output)
    assert "7\\x1b[8m" in table.stdout
    shown = run(store_env, "logs", "show", "1")
    assert no_terminal_controls(shown.output)
    assert f"HTTP 500: {HOSTILE_SHOWN}\n" in shown.stdout
    assert f"response:\nfirst line\n{HOSTILE_SHOWN}\\x0d\nlast line\n" in shown.stdout  # lines kept
    exact = run(store_env, "logs", "show", "1", "--json")
    assert no_terminal_controls(exact.stdout)  # JSON escapes them
    assert json.loads(exact.stdout)["response_body"] == f"first line\n{HOSTILE}\r\nlast line"


def test_dead_lettered_bytes_and_reasons_are_printed_escaped(env: TestEnv, engine: Engine) -> None:
    dead_at = datetime.now(UTC) - timedelta(minutes=5)
    source = SourceRef(topic=env["source_topic"], partition=0, offset=0)
    task = DeliveryTask(
        delivery_id="d-odd",
        webhook_id=1,
        event="asset.created",
        asset_key="7",
        attempt=3,
        not_before=dead_at,
        source=source,
        history=(AttemptRecord(attempt=1, at=dead_at, status_code=500, error=HOSTILE, duration_ms=2.0),),
    )
    letter = DeadLetter(
        kind=DeadLetterKind.ATTEMPTS_EXHAUSTED, reason=f"2 attempts failed, last: {HOSTILE}", dead_at=dead_at,
        source=source, task=task,
    )  # fmt: skip
    body = json.dumps({"event": "asset.created", "note": HOSTILE}, ensure_ascii=False).encode()
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"]})
    headers: list[tuple[str, str | bytes | None]] = [*dead_letter_headers(letter)]
    producer.produce(env["dlq_topic"], value=body, key=b"7", headers=headers)
    producer.produce(env["dlq_topic"], value=b"raw \x1b[2J bytes \xe2\x80\xae", key=b"7")  # no header at all
    assert producer.flush(30) == 0

    listed = cli("dlq", "list", env=env.values)
    assert listed.code == 0, listed.err
    assert no_terminal_controls(listed.out)
    assert "2 attempts failed, last: ok\\x1b[2J\\x1b]0;pwned\\x07" in listed.out
    first = cli("dlq", "show", "1", env=env.values)
    assert no_terminal_controls(first.out)
    assert f"  2 attempts failed, last: {HOSTILE_SHOWN}\n" in first.out
    assert HOSTILE_SHOWN in first.out.split("attempts:")[1]  # the attempt's error
    # The payload is pretty-printed JSON, whose own escapes show the control characters.
    assert '"note": "ok\\u001b[2J\\u001b]0;pwned\\u0007 \\u202etxt.exe"' in first.out
    second = cli("dlq", "show", "2", env=env.values)
    assert no_terminal_controls(second.out)
    assert second.out.splitlines()[-1] == "raw \\x1b[2J bytes \\u202e"
    exact = cli("dlq", "show", "1", "--json", env=env.values)
    assert no_terminal_controls(exact.out)
    shown = json.loads(exact.out)
    assert shown["reason"] == f"2 attempts failed, last: {HOSTILE}"
    assert json.loads(shown["payload"])["note"] == HOSTILE
    assert no_terminal_controls(cli("dlq", "list", "--json", env=env.values).out)
