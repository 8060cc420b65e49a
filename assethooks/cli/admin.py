"""``assethooks config``, ``assethooks topics ensure`` and ``assethooks db upgrade``."""

from __future__ import annotations

import click

from assethooks.cli.base import App, Command, Group, pass_app
from assethooks.cli.output import echo_fields, echo_json, echo_table
from assethooks.durations import format_duration
from assethooks.kafka import ensure_topics
from assethooks.store.db import describe
from assethooks.store.migrate import current_revision, head_revision, upgrade


@click.command("config", cls=Command)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def config(app: App, as_json: bool) -> None:
    """Print the effective settings, secrets masked."""
    shown = app.settings.describe()
    if as_json:
        echo_json(shown)
    else:
        echo_fields(shown)


@click.group("topics", cls=Group)
def topics() -> None:
    """Kafka topics of the service."""


@topics.command("ensure")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def topics_ensure(app: App, as_json: bool) -> None:
    """Create the source, retry-tier and dead-letter topics that do not exist yet (idempotent)."""
    results = ensure_topics(app.settings)
    rows = [
        {
            "topic": result.spec.name,
            "purpose": result.spec.purpose,
            "partitions": result.partitions,
            "retention": format_duration(result.spec.retention_seconds),
            "state": "created" if result.created else "exists",
        }
        for result in results
    ]
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["topic", "purpose", "partitions", "retention", "state"])
    created = sum(result.created for result in results)
    click.echo(
        f"{created} created, {len(results) - created} already there, on {app.settings.kafka_bootstrap}"
    )


@click.group("db", cls=Group)
def db() -> None:
    """The SQL store's schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the database schema to the newest revision."""
    before, after = upgrade(app.engine)
    where = describe(app.engine)
    if before == after:
        click.echo(f"{where} is up to date (revision {after})")
    else:
        click.echo(f"{where} upgraded from {before or 'empty'} to revision {after}")


@db.command("current")
@pass_app
def db_current(app: App) -> None:
    """Show the database's schema revision and the newest one."""
    current = current_revision(app.engine) or "none"
    click.echo(f"{describe(app.engine)}: revision {current} (newest {head_revision()})")


COMMANDS = [config, topics, db]
