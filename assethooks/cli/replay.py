"""``assethooks replay``: re-deliver a time range of the source topic, or rewind the dispatcher group."""

from __future__ import annotations

import click

from assethooks.cli.base import WEBHOOK_ID, App, Command, pass_app
from assethooks.cli.output import counted, echo_table, progress
from assethooks.clock import utc_now
from assethooks.durations import parse_moment
from assethooks.errors import InvalidInputError
from assethooks.operator.replay import ReplayRequest, plan_range, replay_range, rewind_group


@click.command("replay", cls=Command)
@click.option("--from", "start", help="Start of the range: ISO 8601 or a duration ago (2h, 7d).")
@click.option("--to", "end", help="End of the range (exclusive; default: now).")
@click.option(
    "--webhook", "webhook_ids", type=WEBHOOK_ID, multiple=True, help="Only to this webhook (repeatable)."
)
@click.option("--event", "events", multiple=True, help="Only this event (repeatable).")
@click.option("--asset", "assets", multiple=True, help="Only this asset id (repeatable).")
@click.option("--dry-run", is_flag=True, help="Count what would be re-delivered; send nothing.")
@click.option(
    "--rewind-group", "rewind", is_flag=True, help="Instead: move the dispatcher group back to --to."
)
@pass_app
def replay(
    app: App,
    start: str | None,
    end: str | None,
    webhook_ids: tuple[int, ...],
    events: tuple[str, ...],
    assets: tuple[str, ...],
    dry_run: bool,
    rewind: bool,
) -> None:
    """Re-deliver the events of a time range to webhooks, without moving the live dispatcher group.

    Deliveries keep the delivery ids of the originals, so receivers can drop what they already have,
    and take the attempt number after the highest one logged for them. A webhook's payload filter is
    honoured: the events it rejects are counted as filtered out, not queued.
    """
    now = utc_now()
    settings = app.settings
    if rewind:
        if end is None or start is not None or webhook_ids or events or assets or dry_run:
            raise InvalidInputError("--rewind-group takes only --to TIME")
        offsets = rewind_group(settings, parse_moment(end, now))
        echo_table(
            [{"partition": partition, "offset": offset} for partition, offset in sorted(offsets.items())],
            ["partition", "offset"],
        )
        click.echo(
            f"group {settings.dispatcher_group} now starts at these offsets of {settings.source_topic} "
            f"({counted(len(offsets), 'partition')})"
        )
        return
    if start is None:
        raise InvalidInputError("give the start of the range with --from")
    request = ReplayRequest(
        start=parse_moment(start, now),
        end=None if end is None else parse_moment(end, now),
        webhook_ids=webhook_ids,
        events=events,
        assets=assets,
    )
    plan = plan_range(settings, request)
    with progress("replay", plan.total) as advance:
        report = replay_range(
            settings, app.migrated_engine, request, plan, now, dry_run=dry_run, progress=advance
        )
    rows = [
        {"webhook": hook, "deliveries": report.deliveries[hook], "filtered out": report.filtered[hook]}
        for hook in sorted(report.deliveries.keys() | report.filtered.keys())
    ]
    if rows:
        echo_table(rows, ["webhook", "deliveries", *(["filtered out"] if report.filtering else [])])
    verb = "would queue" if dry_run else "queued"
    filtered = f"; {counted(sum(report.filtered.values()), 'event')} filtered out" if report.filtering else ""
    click.echo(
        f"read {counted(report.records, 'record')} ({report.invalid:,} invalid), "
        f"{counted(report.matched, 'event')} matched; "
        f"{verb} {counted(sum(report.deliveries.values()), 'delivery', 'deliveries')}{filtered}"
    )


COMMANDS = [replay]
