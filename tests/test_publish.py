"""``assethooks publish`` and the publisher API against the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from assethooks.kafka import ensure_topics
from tests.conftest import TestEnv
from tests.support import CliResult, cli, read_topic, records_in

VALID = (
    '{"event":"asset.created","timestamp":"2025-02-04T12:00:00+00:00","source":"perfex_assets_module",'
    '"asset_id":123,"asset":{"id":123},"data":{}}'
)
DELETED = (
    '{"event":"asset.deleted","timestamp":"2025-02-04T12:00:00+00:00","source":"perfex_assets_module",'
    '"asset_id":null,"asset":{"id":9},"data":{}}'
)


def keyed(records: list[Message]) -> dict[bytes, bytes]:
    found = {}
    for record in records:
        key, value = record.key(), record.value()
        assert key is not None
        assert value is not None
        found[key] = value
    return found


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_json_lines_file_with_invalid_lines_names_them_and_sends_nothing(
    env: TestEnv, tmp_path: Path, source: str
) -> None:
    ensure_topics(env.settings())
    lines = [VALID, "{not json", DELETED, VALID.replace("asset.created", "asset.exploded"), ""]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")

    def publish() -> CliResult:  # from the file, or piped in (a pipe cannot be read twice)
        if source == "file":
            return cli("publish", "--file", str(events), env=env.values)
        return cli("publish", "--file", "-", env=env.values, stdin=events.read_text())

    result = publish()
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        "line 2: not valid JSON: key must be a string at line 1 column 2",
        "line 4: unknown event 'asset.exploded'",
        "Error: 2 of 4 events invalid: nothing published",
    ]
    assert records_in(env, env["source_topic"]) == 0

    events.write_text(f"{VALID}\n\n{DELETED}\n")
    sent = publish()
    assert sent.code == 0, sent.err
    assert sent.out.strip() == f"published 2 of 2 events to {env['source_topic']}"
    records = keyed(read_topic(env["kafka_bootstrap"], env["source_topic"], count=2))
    assert records == {b"123": VALID.encode(), b"9": DELETED.encode()}  # byte for byte, keyed by asset id


def test_a_line_over_the_record_size_limit_is_named_with_the_limit_and_nothing_is_sent(
    env: TestEnv, tmp_path: Path
) -> None:
    ensure_topics(env.settings())
    padding = "x" * 1_100_000
    big = VALID.replace('"data":{}', f'"data":{{"notes":"{padding}"}}')
    events = tmp_path / "events.jsonl"
    events.write_text(f"{VALID}\n{big}\n{DELETED}\n")
    result = cli("publish", "--file", str(events), env=env.values)
    assert result.code == 2
    assert "Traceback" not in result.err
    line, summary = result.err.splitlines()
    # librdkafka takes at most 1,000,000 bytes per record, less 36 of framing and the key (b"123").
    assert line == (
        f"line 2: {len(big):,} bytes, more than the 999,961 one event may take (Kafka's record size limit)"
    )
    assert summary == "Error: 1 of 3 events invalid: nothing published"
    assert records_in(env, env["source_topic"]) == 0  # checked first: not even line 1 was sent
    assert "nothing is published" in " ".join(cli("publish", "--help", env=env.values).out.split())

    # A topic that takes less than the producer: its limit counts, less a record batch's framing.
    admin = AdminClient({"bootstrap.servers": env["kafka_bootstrap"]})
    smaller = ConfigResource(
        ConfigResource.Type.TOPIC,
        env["source_topic"],
        incremental_configs=[
            ConfigEntry("max.message.bytes", "50000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for done in admin.incremental_alter_configs([smaller]).values():
        done.result(timeout=10)
    middling = VALID.replace('"data":{}', f'"data":{{"notes":"{"y" * 60_000}"}}')
    alone = cli("publish", "--json", middling, env=env.values)
    assert alone.code == 2
    assert alone.err.splitlines() == [
        f"Error: {len(middling):,} bytes, more than the 49,900 one event may take (Kafka's record size limit)"
    ]
    assert records_in(env, env["source_topic"]) == 0


def test_one_event_from_options_or_stdin(env: TestEnv) -> None:
    ensure_topics(env.settings())
    built = cli(
        "publish", "--event", "asset.checked_out", "--asset-id", "55", "--asset", '{"name": "Drill"}',
        "--data", '{"due": "2026-12-01"}', env=env.values,
    )  # fmt: skip
    assert built.code == 0, built.err
    piped = cli("publish", "--file", "-", env=env.values, stdin=VALID + "\n")
    assert piped.code == 0, piped.err
    sent = keyed(read_topic(env["kafka_bootstrap"], env["source_topic"], count=2))
    checked_out = json.loads(sent[b"55"])
    assert checked_out["event"] == "asset.checked_out"
    assert checked_out["asset"] == {"name": "Drill"}
    assert checked_out["data"] == {"due": "2026-12-01"}
    assert checked_out["source"] == "perfex_assets_module"


def test_bad_publish_arguments_get_one_line(env: TestEnv) -> None:
    cases = {
        ("publish",): "Error: give exactly one of --event (with its options), --json or --file",
        (
            "publish",
            "--event",
            "asset.created",
            "--asset-id",
            "1",
            "--asset",
            "[1]",
        ): "Error: --asset must be a JSON object",
        ("publish", "--event", "asset.deleted"): "deleted without asset_id needs the asset id",
    }
    for args, message in cases.items():
        result = cli(*args, env=env.values)
        assert result.code == 2, args
        assert message in result.err.splitlines()[-1], result.err
    unreachable = cli("publish", "--json", VALID, env=env.with_(kafka_bootstrap="127.0.0.1:1").values)
    assert unreachable.code == 4
    assert unreachable.err.strip().startswith("Error: cannot reach Kafka at 127.0.0.1:1")
