"""``assethooks publish`` and the publisher API against the real broker."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Message

from assethooks.kafka import ensure_topics
from tests.conftest import TestEnv
from tests.support import cli, read_topic

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


def test_a_json_lines_file_sends_the_valid_lines_and_names_the_others(env: TestEnv, tmp_path: Path) -> None:
    ensure_topics(env.settings())
    lines = [VALID, "{not json", DELETED, VALID.replace("asset.created", "asset.exploded"), ""]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    result = cli("publish", "--file", str(events), env=env.values)
    assert result.code == 2
    assert "published 2 of 4 events" in result.out
    assert result.err.splitlines() == [
        "line 2: not valid JSON: key must be a string at line 1 column 2",
        "line 4: unknown event 'asset.exploded'",
        "Error: 2 of 4 events not published",
    ]
    sent = keyed(read_topic(env["kafka_bootstrap"], env["source_topic"], count=2))
    assert sent == {b"123": VALID.encode(), b"9": DELETED.encode()}  # byte for byte, keyed by asset id


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
