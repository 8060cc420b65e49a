"""``assethooks secrets``: keys for encrypting webhook secrets at rest."""

from __future__ import annotations

import click

from assethooks.cli.base import App, Group, pass_app
from assethooks.cli.output import counted
from assethooks.secrets import new_key


@click.group("secrets", cls=Group)
def secrets() -> None:
    """Encryption at rest of webhook secrets and custom header values."""


@secrets.command("new-key")
def new_key_command() -> None:
    """Print a new key for ASSETHOOKS_ENCRYPTION_KEYS (put it first; keep older keys after it)."""
    click.echo(new_key())


@secrets.command("encrypt")
@pass_app
def encrypt(app: App) -> None:
    """Store every webhook secret and header value again, encrypted with the first key."""
    if not app.box.encrypting:
        raise click.UsageError("set ASSETHOOKS_ENCRYPTION_KEYS first (see `assethooks secrets new-key`)")
    count = app.webhooks.reseal()
    click.echo(f"re-encrypted the secrets of {counted(count, 'webhook')} with the first key")


COMMANDS = [secrets]
