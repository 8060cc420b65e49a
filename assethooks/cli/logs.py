"""``assethooks logs``: the delivery log (seed §6) — list with filters, show, retry failed deliveries,
purge old entries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
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
from assethooks.durations import format_duration, parse_duration
from assethooks.operator.deliveries import (
    LogFilters,
    attempts_to_retry,
    list_attempts,
    plain_attempt,
    resend_failed,
)
from assethooks.store.delivery_log import LoggedAttempt, get_attempt, purge_attempts

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(function: F) -> F:
    """The filters shared by ``logs`` and ``logs retry``."""
    options = [
        click.option("--webhook", "webhook_id", type=WEBHOOK_ID, help="Only this webhook."),
        click.option("--event", help="Only this event, e.g. asset.created."),
        click.option("--asset", help="Only this asset id."),
        click.option(
            "--status", type=click.Choice(["ok", "failed"]), help="Only successful or failed attempts."
        ),
        click.option("--since", help="From this time: ISO 8601 or a duration ago (2h, 7d)."),
        click.option("--until", help="Before this time: ISO 8601 or a duration ago."),
    ]
    return with_options(options)(function)


def _row(attempt: LoggedAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "time": attempt.created_at.isoformat(timespec="seconds"),
        "webhook": attempt.webhook_id,
        "event": attempt.event,
        "asset": attempt.asset_id,
        "attempt": attempt.attempt,
        "code": attempt.status_code,
        "result": "ok" if attempt.success else "failed",
        "ms": f"{attempt.duration_ms:.0f}",
        "error": short(attempt.error, 50),
    }


@click.group("logs", cls=Group, invoke_without_command=True)
@filter_options
@click.option(
    "--limit", type=LIMIT, default=50, show_default=True, help="At most this many attempts, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def logs(
    ctx: click.Context,
    webhook_id: int | None,
    event: str | None,
    asset: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List delivery attempts, newest first (subcommands: show, retry, purge).

    When --limit cuts the list, the last line says how many attempts match in all
    (counted up to 100,000); with --json, "total" and "total_exact" say it.
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.ensure_object(App)
    filters = LogFilters(webhook_id, event, asset, status, since, until)
    found = list_attempts(app.migrated_engine, filters, limit)
    if as_json:
        echo_json(
            {
                "attempts": [plain_attempt(attempt) for attempt in found.items],
                "total": found.total,
                "total_exact": found.exact,
            }
        )
        return
    echo_table(
        [_row(attempt) for attempt in found.items],
        ["id", "time", "webhook", "event", "asset", "attempt", "code", "result", "ms", "error"],
    )
    click.echo(shown_of(len(found.items), found.total, found.exact, "attempt"))


@logs.command("show")
@click.argument("log_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, log_id: int, as_json: bool) -> None:
    """Show one attempt in full, with the start of the answer."""
    attempt = get_attempt(app.migrated_engine, log_id)
    if as_json:
        echo_json(plain_attempt(attempt))
        return
    fields = plain_attempt(attempt)
    answer = fields.pop("response_body")
    echo_fields(fields)
    click.echo("response:")
    say_text(answer if answer else "(empty)")


@logs.command("retry")
@click.argument("log_ids", type=ID, nargs=-1)
@filter_options
@click.option("--limit", type=LIMIT, default=None, help="At most this many deliveries.")
@pass_app
def retry(
    app: App,
    log_ids: tuple[int, ...],
    webhook_id: int | None,
    event: str | None,
    asset: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> None:
    """Re-send failed deliveries through the pipeline: same delivery id, the attempt number after the
    highest one logged for it, a fresh retry budget.

    Give log entry ids, or filters (e.g. --webhook 3 --status failed --since 1d).
    """
    engine = app.migrated_engine
    filters = LogFilters(webhook_id, event, asset, status, since, until)
    attempts = attempts_to_retry(engine, log_ids, filters, limit)
    with progress("retry", len(attempts)) as advance:
        report = resend_failed(app.settings, engine, attempts, utc_now(), advance)
    for log_id, reason in report.skipped:
        say(f"log entry {log_id} skipped: {reason}", err=True)
    click.echo(
        f"queued {counted(len(report.queued), 'delivery', 'deliveries')} for another attempt, "
        f"skipped {len(report.skipped):,}"
    )


@logs.command("purge")
@click.option("--older-than", help="Delete entries older than this (default: ASSETHOOKS_LOG_RETENTION, 30d).")
@pass_app
def purge(app: App, older_than: str | None) -> None:
    """Delete old delivery-log entries, in batches."""
    age = parse_duration(older_than) if older_than else app.settings.log_retention
    cutoff = utc_now() - timedelta(seconds=age)
    removed = purge_attempts(app.migrated_engine, cutoff)
    click.echo(
        f"purged {counted(removed, 'entry', 'entries')} older than {format_duration(age)} "
        f"({cutoff.isoformat(timespec='seconds')})"
    )


COMMANDS = [logs]
