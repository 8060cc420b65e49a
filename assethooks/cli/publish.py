"""``assethooks publish``: send asset events to the source topic, one from options or JSON, or many from a
JSON-lines file or stdin. Every event is checked first — a valid event, with a key, small enough for one
Kafka record — and nothing is sent unless all of them pass."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import click

from assethooks.cli.base import App, Command, pass_app
from assethooks.cli.output import counted, say
from assethooks.errors import InvalidEventError, KafkaUnavailableError
from assethooks.kafka import record_limit
from producers.events import EventPublisher, event_key
from schemas.events import DEFAULT_SOURCE, parse_event

SPOOL_IN_MEMORY = 64 * 1024 * 1024  # stdin is kept in memory up to this size, then in a temporary file


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


def problem_with(body: bytes, key: str | None, limit: int) -> str | None:
    """Why ``body`` cannot be published (not a valid event, no key, too large), or ``None``."""
    try:
        chosen_key = event_key(parse_event(body), key)
    except InvalidEventError as exc:
        return str(exc)
    room = limit - len(chosen_key.encode())
    if len(body) > room:
        return f"{len(body):,} bytes, more than the {room:,} one event may take (Kafka's record size limit)"
    return None


def _lines(source: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(source, 1):
        if line.strip():
            yield f"line {number}", line.strip()


def _rereadable(file: IO[bytes]) -> IO[bytes]:
    """``file`` if it can be read twice, else a copy of it (stdin)."""
    if file.seekable():
        return file
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (closed by click's context)
    for line in file:
        copy.write(line)
    copy.seek(0)
    click.get_current_context().call_on_close(copy.close)
    return copy


@click.command("publish", cls=Command)
@click.option("--event", help="Event name, e.g. asset.created.")
@click.option("--asset-id", type=int, help="Asset id (leave out for asset.deleted).")
@click.option("--asset", metavar="JSON", help="The asset object.")
@click.option("--data", metavar="JSON", help="Event-specific data object.")
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, help="The event's source.")
@click.option("--timestamp", help="ISO 8601 time with offset (default: now).")
@click.option("--json", "raw_json", metavar="JSON", help="A whole event as JSON.")
@click.option(
    "--file",
    "file",
    type=click.File("rb"),
    help="JSON lines, one event each ('-' = stdin). Every line is checked first; if any is invalid or too "
    "large for Kafka, each such line is named and nothing is published.",
)
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
    file: IO[bytes] | None,
    key: str | None,
) -> None:
    """Publish asset events to the source topic (validated, keyed by asset id).

    Every event is checked before any is sent: a valid event, with a key, no larger than one Kafka
    record may be. If one is not, nothing is published (exit 2).
    """
    modes = sum(value is not None for value in (event, raw_json, file))
    if modes != 1:
        raise InvalidEventError("give exactly one of --event (with its options), --json or --file")
    limit = record_limit(app.settings, app.settings.source_topic)
    if event is not None or raw_json is not None:
        if event is not None:
            label, body = "event", _from_options(event, asset_id, asset, data, source, timestamp)
        else:
            label, body = "--json", (raw_json or "").encode()
        problem = problem_with(body, key, limit)
        if problem is not None:
            raise InvalidEventError(problem)
        _send(app, [(label, body)], 1, key)
        return
    assert file is not None
    lines = _rereadable(file)
    total, problems = 0, []
    for label, body in _lines(lines):
        total += 1
        problem = problem_with(body, key, limit)
        if problem is not None:
            problems.append((label, problem))
    if problems:
        for label, problem in problems:
            say(f"{label}: {problem}", err=True)
        raise InvalidEventError(f"{len(problems):,} of {counted(total, 'event')} invalid: nothing published")
    lines.seek(0)
    _send(app, _lines(lines), total, key)


def _send(app: App, items: Iterable[tuple[str, bytes]], total: int, key: str | None) -> None:
    """Publish events already checked; what Kafka did not acknowledge is named (exit 4)."""
    with EventPublisher(app.settings) as publisher:
        for label, body in items:
            try:
                publisher.publish(body, key=key, label=label)
            except BufferError:  # the producer's queue is full: let it drain, then go on
                publisher.flush()
                publisher.publish(body, key=key, label=label)
    report = publisher.report
    for label, reason in report.failed:
        say(f"{label}: {reason}", err=True)
    click.echo(f"published {report.sent:,} of {counted(total, 'event')} to {app.settings.source_topic}")
    if report.failed:
        raise KafkaUnavailableError(f"{len(report.failed):,} of {counted(total, 'event')} not published")


COMMANDS = [publish]
