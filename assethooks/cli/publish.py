"""``assethooks publish``: send asset events to the source topic, one from options or JSON, or many from a
JSON-lines file or stdin. Each event is validated first; invalid ones are reported and not sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, BinaryIO

import click

from assethooks.cli.base import App, pass_app
from assethooks.errors import InvalidEventError
from producers.events import EventPublisher
from schemas.events import DEFAULT_SOURCE


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEventError(f"{option} is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidEventError(f"{option} must be a JSON object")
    return value


def _from_options(
    event: str, asset_id: int | None, asset: str | None, data: str | None, source: str, timestamp: str | None
) -> bytes:
    envelope = {
        "event": event,
        "timestamp": timestamp or datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "asset_id": asset_id,
        "asset": _json_object(asset, "--asset"),
        "data": _json_object(data, "--data"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


@click.command("publish")
@click.option("--event", help="Event name, e.g. asset.created.")
@click.option("--asset-id", type=int, help="Asset id (leave out for asset.deleted).")
@click.option("--asset", metavar="JSON", help="The asset object.")
@click.option("--data", metavar="JSON", help="Event-specific data object.")
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, help="The event's source.")
@click.option("--timestamp", help="ISO 8601 time with offset (default: now).")
@click.option("--json", "raw_json", metavar="JSON", help="A whole event as JSON.")
@click.option("--file", "file", type=click.File("rb"), help="JSON lines, one event each ('-' = stdin).")
@click.option("--key", help="Kafka key (default: the asset id, or asset.id for deletions).")
@pass_app
def publish(
    app: App,
    event: str | None,
    asset_id: int | None,
    asset: str | None,
    data: str | None,
    source: str,
    timestamp: str | None,
    raw_json: str | None,
    file: BinaryIO | None,
    key: str | None,
) -> None:
    """Publish asset events to the source topic (validated, keyed by asset id)."""
    modes = sum(value is not None for value in (event, raw_json, file))
    if modes != 1:
        raise InvalidEventError("give exactly one of --event (with its options), --json or --file")
    if event is not None:
        items = [("event", _from_options(event, asset_id, asset, data, source, timestamp))]
    elif raw_json is not None:
        items = [("--json", raw_json.encode())]
    else:
        assert file is not None
        items = [(f"line {number}", line.strip()) for number, line in enumerate(file, 1) if line.strip()]
    with EventPublisher(app.settings) as publisher:
        for label, body in items:
            publisher.publish(body, key=key, label=label)
    report = publisher.report
    if len(items) == 1 and report.failed:
        raise InvalidEventError(report.failed[0][1])
    for label, reason in report.failed:
        click.echo(f"{label}: {reason}", err=True)
    click.echo(f"published {report.sent} of {len(items)} events to {app.settings.source_topic}")
    if report.failed:
        raise InvalidEventError(f"{len(report.failed)} of {len(items)} events not published")


COMMANDS = [publish]
