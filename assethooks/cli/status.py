"""``assethooks status``: whether the service keeps up — its consumer groups and their lag, the retry-tier
backlog, the pending dead letters and the last alerts run."""

from __future__ import annotations

import click

from assethooks.cli.base import App, Command, pass_app
from assethooks.cli.output import counted, echo_json, echo_table, say
from assethooks.durations import format_duration
from assethooks.kafka import Member
from assethooks.operator.status import AlertsRun, GroupStatus, ServiceStatus, service_status


@click.command("status", cls=Command)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the consumer groups (state, members, lag per partition), the retry-tier backlog, the pending
    dead letters and the last alerts run.

    Lag is what a group has still to read: from its committed offset, or from the start of a partition
    where it committed nothing, to the partition's end.
    """
    found = service_status(app.settings, app.migrated_engine)
    if as_json:
        echo_json(found.plain())
        return
    _say_status(found)


def _say_status(found: ServiceStatus) -> None:
    for group in found.groups:
        _say_group(group)
        click.echo()
    tiers = counted(len(found.tiers), "tier")
    say(f"retry backlog: {counted(found.retry_backlog, 'task')} waiting on {tiers}")
    echo_table(
        [
            {"tier": format_duration(tier.delay), "topic": tier.topic, "waiting": tier.waiting}
            for tier in found.tiers
        ],
        ["tier", "topic", "waiting"],
    )
    more = "" if found.dead_letters_exact else "more than "
    click.echo(f"\ndead letters: {more}{found.pending_dead_letters:,} pending")
    click.echo(f"last alerts run: {_run(found.last_alerts_run)}")


def _say_group(group: GroupStatus) -> None:
    members = counted(len(group.members), "member") if group.members else "no members"
    say(f"{group.role} (group {group.group}): {group.state}, {members}, lag {group.lag:,}")
    numbers = {member.member_id: index for index, member in enumerate(group.members, 1)}
    for member in group.members:
        who = f"{member.client_id} at {member.host}"
        say(f"  member {numbers[member.member_id]}: {who}, reads {_assigned(member)}")
    for topic in group.missing_topics:
        say(f"  topic {topic} does not exist (assethooks topics ensure)")
    if not group.partitions:
        return
    rows = [
        {
            "topic": item.topic,
            "partition": item.partition,
            "committed": item.committed,
            "end": item.end,
            "lag": item.lag,
            "member": None if item.member_id is None else numbers.get(item.member_id),
        }
        for item in group.partitions
    ]
    echo_table(rows, ["topic", "partition", "committed", "end", "lag", "member"])


def _assigned(member: Member) -> str:
    """``topic [0,1,2], other [0]``: a member's partitions by topic."""
    by_topic: dict[str, list[str]] = {}
    for topic, partition in member.partitions:
        by_topic.setdefault(topic, []).append(str(partition))
    return ", ".join(f"{topic} [{','.join(numbers)}]" for topic, numbers in by_topic.items()) or "nothing"


def _run(run: AlertsRun | None) -> str:
    if run is None:
        return "never"
    at, finished = (moment.isoformat(timespec="seconds") for moment in (run.at, run.finished_at))
    return (
        f"for {at}, finished {finished}: {counted(run.due, 'alert')} due, {run.sent} sent, "
        f"{run.already} already sent, {run.failed} failed"
    )


COMMANDS = [status]
