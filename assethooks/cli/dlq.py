"""``assethooks dlq``: drain the dead-letter topic — list, show, replay, purge."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from assethooks.cli.base import App, pass_app
from assethooks.cli.output import echo_fields, echo_json, echo_table, progress, short
from assethooks.clock import utc_now
from assethooks.operator import dead_letters as drain
from assethooks.store.dead_letters import DeadLetterEntry, DeadLetterStatus

F = TypeVar("F", bound=Callable[..., Any])


def selection_options(function: F) -> F:
    """The filters that pick dead letters."""
    options = [
        click.option("--webhook", "webhook_id", type=int, help="Only deliveries to this webhook."),
        click.option("--event", help="Only this event."),
        click.option(
            "--kind", type=click.Choice(["invalid-event", "attempts-exhausted", "undeliverable", "unknown"])
        ),
        click.option("--reason", help="Only entries whose reason contains this text."),
        click.option("--since", help="Dead since: ISO 8601 or a duration ago (2h, 7d)."),
        click.option("--until", help="Dead before: ISO 8601 or a duration ago."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _row(entry: DeadLetterEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "dead_at": entry.dead_at.isoformat(timespec="seconds"),
        "kind": entry.kind,
        "webhook": entry.webhook_id,
        "event": entry.event,
        "asset": entry.asset_id,
        "attempts": entry.attempts,
        "status": entry.status,
        "reason": short(entry.reason, 60),
    }


@click.group("dlq")
def dlq() -> None:
    """The dead-letter topic: list, show, replay or purge entries."""


@dlq.command("list")
@selection_options
@click.option(
    "--status", "state", type=click.Choice(["pending", "replayed", "purged", "all"]), default="pending"
)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: App, /, state: str, limit: int, as_json: bool, **filters: Any) -> None:
    """List dead letters (pending ones by default), oldest first."""
    status = None if state == "all" else DeadLetterStatus(state)
    entries = drain.select(app.settings, app.migrated_engine, (), filters, status=status, limit=limit)
    if as_json:
        echo_json([drain.plain_entry(entry) for entry in entries])
        return
    echo_table(
        [_row(entry) for entry in entries],
        ["id", "dead_at", "kind", "webhook", "event", "asset", "attempts", "status", "reason"],
    )
    click.echo(f"{len(entries)} {state} entries")


@dlq.command("show")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, entry_id: int, as_json: bool) -> None:
    """Show one dead letter: why, every attempt, and the payload."""
    drain.sync(app.settings, app.migrated_engine)
    shown = drain.show(app.settings, app.migrated_engine, entry_id)
    history = shown.letter.task.history if shown.letter and shown.letter.task else ()
    payload = shown.body.decode("utf-8", errors="replace") if shown.body is not None else None
    if as_json:
        attempts = [item.model_dump(mode="json") for item in history]
        echo_json(
            drain.plain_entry(shown.entry)
            | {"history": attempts, "payload": payload, "in_topic": shown.in_topic}
        )
        return
    echo_fields(drain.plain_entry(shown.entry))
    if history:
        click.echo("attempts:")
        rows = [
            {
                "attempt": item.attempt,
                "at": item.at.isoformat(timespec="seconds"),
                "code": item.status_code,
                "ms": f"{item.duration_ms:.0f}",
                "error": item.error,
            }
            for item in history
        ]
        echo_table(rows, ["attempt", "at", "code", "ms", "error"])
    click.echo("payload:")
    click.echo(_pretty(payload) if shown.in_topic else "(no longer in the topic: past its retention)")


def _pretty(payload: str | None) -> str:
    if payload is None:
        return "(empty)"
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


@dlq.command("replay")
@click.argument("entry_ids", type=int, nargs=-1)
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every pending entry.")
@click.option("--dry-run", is_flag=True, help="Only print what would be replayed.")
@pass_app
def replay(app: App, /, entry_ids: tuple[int, ...], everything: bool, dry_run: bool, **filters: Any) -> None:
    """Send pending dead letters back through the pipeline with a fresh attempt budget."""
    entries = drain.select(
        app.settings, app.migrated_engine, entry_ids, filters, everything=everything, required=True
    )
    if dry_run:
        echo_table([_row(entry) for entry in entries], ["id", "kind", "webhook", "event", "asset", "reason"])
        click.echo(f"would replay {len(entries)} entries (dry run: nothing sent)")
        return
    with progress("replay", len(entries)) as advance:
        report = drain.replay(app.settings, app.migrated_engine, entries, utc_now(), advance)
    for entry_id in report.missing:
        click.echo(f"entry {entry_id} is no longer in the topic (past its retention); left pending", err=True)
    click.echo(f"replayed {len(report.done)} entries, {len(report.missing)} missing from the topic")


@dlq.command("purge")
@click.argument("entry_ids", type=int, nargs=-1)
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every pending entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def purge(app: App, /, entry_ids: tuple[int, ...], everything: bool, yes: bool, **filters: Any) -> None:
    """Mark pending dead letters resolved without sending them."""
    entries = drain.select(
        app.settings, app.migrated_engine, entry_ids, filters, everything=everything, required=True
    )
    if entries and not yes:
        click.confirm(f"Purge {len(entries)} dead letters without sending them?", abort=True)
    report = drain.purge(app.migrated_engine, entries, utc_now())
    click.echo(f"purged {len(report.done)} entries")


COMMANDS = [dlq]
