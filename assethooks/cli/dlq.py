"""``assethooks dlq``: drain the dead-letter topic — list, show, replay, purge."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from assethooks.cli.base import ID, LIMIT, WEBHOOK_ID, App, Group, pass_app, with_options
from assethooks.cli.output import (
    counted,
    echo_fields,
    echo_json,
    echo_table,
    progress,
    say,
    say_text,
    short,
    shown_of,
)
from assethooks.clock import utc_now
from assethooks.operator import dead_letters as drain
from assethooks.store.dead_letters import DeadLetterEntry, DeadLetterStatus

F = TypeVar("F", bound=Callable[..., Any])


def selection_options(function: F) -> F:
    """The filters that pick dead letters."""
    options = [
        click.option("--webhook", "webhook_id", type=WEBHOOK_ID, help="Only deliveries to this webhook."),
        click.option("--event", help="Only this event."),
        click.option(
            "--kind", type=click.Choice(["invalid-event", "attempts-exhausted", "undeliverable", "unknown"])
        ),
        click.option("--reason", help="Only entries whose reason contains this text."),
        click.option("--since", help="Dead since: ISO 8601 or a duration ago (2h, 7d)."),
        click.option("--until", help="Dead before: ISO 8601 or a duration ago."),
    ]
    return with_options(options)(function)


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


@click.group("dlq", cls=Group)
def dlq() -> None:
    """The dead-letter topic: list, show, replay or purge entries.

    An entry is pending until it is replayed or purged, or resolved: its delivery succeeded after it
    died (a `logs retry`, a replay), so it is not sent again.
    """


@dlq.command("list")
@selection_options
@click.option(
    "--status",
    "state",
    type=click.Choice([*(status.value for status in DeadLetterStatus), "all"]),
    default="pending",
    show_default=True,
)
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: App, /, state: str, limit: int, as_json: bool, **filters: Any) -> None:
    """List dead letters (pending ones by default), oldest first.

    When --limit cuts the list, the last line says how many entries match in all (counted up to
    100,000); with --json, "total" and "total_exact" say it.
    """
    status = None if state == "all" else DeadLetterStatus(state)
    found = drain.listing(app.settings, app.migrated_engine, filters, status=status, limit=limit)
    if as_json:
        echo_json(
            {
                "entries": [drain.plain_entry(entry) for entry in found.items],
                "total": found.total,
                "total_exact": found.exact,
            }
        )
        return
    echo_table(
        [_row(entry) for entry in found.items],
        ["id", "dead_at", "kind", "webhook", "event", "asset", "attempts", "status", "reason"],
    )
    noun = "entry" if status is None else f"{status} entry"
    click.echo(shown_of(len(found.items), found.total, found.exact, noun, noun.replace("entry", "entries")))


@dlq.command("show")
@click.argument("entry_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, entry_id: int, as_json: bool) -> None:
    """Show one dead letter: why, every attempt, and the payload."""
    drain.sync(app.settings, app.migrated_engine)
    shown = drain.show(app.settings, app.migrated_engine, entry_id)
    if as_json:
        echo_json(shown.plain())
        return
    echo_fields(drain.plain_entry(shown.entry))
    if shown.history:
        click.echo("attempts:")
        rows = [
            {
                "attempt": item.attempt,
                "at": item.at.isoformat(timespec="seconds"),
                "code": item.status_code,
                "ms": f"{item.duration_ms:.0f}",
                "error": item.error,
            }
            for item in shown.history
        ]
        echo_table(rows, ["attempt", "at", "code", "ms", "error"])
    click.echo("payload:")
    say_text(_pretty(shown.payload) if shown.in_topic else "(no longer in the topic: past its retention)")


def _pretty(payload: str | None) -> str:
    if payload is None:
        return "(empty)"
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


@dlq.command("replay")
@click.argument("entry_ids", type=ID, nargs=-1)
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every pending entry.")
@click.option("--dry-run", is_flag=True, help="Only print what would be replayed.")
@pass_app
def replay(app: App, /, entry_ids: tuple[int, ...], everything: bool, dry_run: bool, **filters: Any) -> None:
    """Send pending dead letters back through the pipeline with a fresh attempt budget and the attempt
    number after the highest one logged for their delivery.

    Entries whose delivery succeeded after they died are resolved instead, not sent again. Unknown ids
    exit 3; entries already replayed, purged or resolved are named and left alone.
    """
    entries = drain.select(
        app.settings, app.migrated_engine, entry_ids, filters, everything=everything, required=True
    )
    pending = [entry for entry in entries if entry.status == DeadLetterStatus.PENDING]
    if dry_run:
        _say_already(entries)
        echo_table([_row(entry) for entry in pending], ["id", "kind", "webhook", "event", "asset", "reason"])
        click.echo(f"would replay {counted(len(pending), 'entry', 'entries')} (dry run: nothing sent)")
        return
    with progress("replay", len(pending)) as advance:
        report = drain.replay(app.settings, app.migrated_engine, entries, utc_now(), advance)
    for entry_id in report.missing:
        say(f"entry {entry_id} is no longer in the topic (past its retention); left pending", err=True)
    _say_already(report.already)
    if pending or not report.already:
        replayed = counted(len(report.done), "entry", "entries")
        click.echo(f"replayed {replayed}, {len(report.missing):,} missing from the topic")


def _say_already(entries: list[DeadLetterEntry]) -> None:
    """Name the chosen entries that were not pending any more, and since when."""
    for entry in entries:
        if entry.status == DeadLetterStatus.PENDING:
            continue
        when = entry.resolved_at.isoformat(timespec="seconds") if entry.resolved_at else "an unknown time"
        how = (
            "resolved (its delivery succeeded)" if entry.status == DeadLetterStatus.RESOLVED else entry.status
        )
        click.echo(f"entry {entry.id} was already {how} at {when}")


@dlq.command("purge")
@click.argument("entry_ids", type=ID, nargs=-1)
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every pending entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def purge(app: App, /, entry_ids: tuple[int, ...], everything: bool, yes: bool, **filters: Any) -> None:
    """Mark pending dead letters purged without sending them.

    Unknown ids exit 3; entries already replayed, purged or resolved are named and left alone.
    """
    entries = drain.select(
        app.settings, app.migrated_engine, entry_ids, filters, everything=everything, required=True
    )
    pending = [entry for entry in entries if entry.status == DeadLetterStatus.PENDING]
    if pending and not yes:
        them = "it" if len(pending) == 1 else "them"
        click.confirm(f"Purge {counted(len(pending), 'dead letter')} without sending {them}?", abort=True)
    report = drain.purge(app.migrated_engine, entries, utc_now())
    _say_already(report.already)
    if pending or not report.already:
        click.echo(f"purged {counted(len(report.done), 'entry', 'entries')}")


COMMANDS = [dlq]
