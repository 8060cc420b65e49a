"""``assethooks receiver``: a local endpoint that prints deliveries and checks their signatures."""

from __future__ import annotations

import asyncio
import contextlib

import click

from assethooks.receiver import serve


@click.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, help="Port to listen on.")
@click.option(
    "--secret", envvar="ASSETHOOKS_RECEIVER_SECRET", help="Webhook secret to verify signatures with."
)
@click.option("--status", default=200, show_default=True, help="HTTP status to answer with.")
def receiver(host: str, port: int, secret: str | None, status: int) -> None:
    """Print every delivery received, with its signature verdict (for demos and endpoint development)."""
    click.echo(f"listening on http://{host}:{port}/ (answering {status})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, secret, status, click.echo))


COMMANDS = [receiver]
