"""``assethooks receiver``: a local endpoint that prints deliveries and checks their signatures."""

from __future__ import annotations

import asyncio
import contextlib

import click

from assethooks.cli.base import Command
from assethooks.cli.output import say
from assethooks.errors import ConfigError, InvalidInputError
from assethooks.receiver import serve
from assethooks.signing import PUBLIC_KEY_PREFIX


@click.command("receiver", cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--secret", envvar="ASSETHOOKS_RECEIVER_SECRET", help="Webhook secret to verify signatures with."
)
@click.option(
    "--public-key",
    envvar="ASSETHOOKS_RECEIVER_PUBLIC_KEY",
    help="whpk_ public key to verify standard-ed25519 (v1a) signatures with.",
)
@click.option(
    "--status",
    default=200,
    show_default=True,
    type=click.IntRange(200, 599),
    help="HTTP status to answer with.",
)
def receiver(host: str, port: int, secret: str | None, public_key: str | None, status: int) -> None:
    """Print every delivery received, with its signature verdict (for demos and endpoint development)."""
    if secret is not None and public_key is not None:
        raise InvalidInputError("use either --secret or --public-key, not both")
    if public_key is not None and not public_key.startswith(PUBLIC_KEY_PREFIX):
        raise InvalidInputError("--public-key takes the webhook's whpk_ public key (see `webhooks show`)")
    click.echo(f"listening on http://{host}:{port}/ (answering {status})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(host, port, secret or public_key, status, say))  # what senders send is escaped
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


COMMANDS = [receiver]
