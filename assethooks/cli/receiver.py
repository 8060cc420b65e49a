"""``assethooks receiver``: a local endpoint that prints deliveries and checks their signatures."""

from __future__ import annotations

import asyncio
import contextlib

import click

from assethooks.cli.base import Command
from assethooks.cli.output import say
from assethooks.errors import ConfigError
from assethooks.receiver import serve


@click.command("receiver", cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--secret", envvar="ASSETHOOKS_RECEIVER_SECRET", help="Webhook secret to verify signatures with."
)
@click.option(
    "--status",
    default=200,
    show_default=True,
    type=click.IntRange(200, 599),
    help="HTTP status to answer with.",
)
def receiver(host: str, port: int, secret: str | None, status: int) -> None:
    """Print every delivery received, with its signature verdict (for demos and endpoint development)."""
    click.echo(f"listening on http://{host}:{port}/ (answering {status})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(host, port, secret, status, say))  # what senders send is escaped
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


COMMANDS = [receiver]
