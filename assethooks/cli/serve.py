"""``assethooks serve``: the admin page (the seed's Webhooks screen) and its JSON API."""

from __future__ import annotations

import ipaddress

import click
from aiohttp import web

from assethooks.cli.base import App, Command, pass_app
from assethooks.errors import ConfigError
from assethooks.logging_setup import configure_logging
from assethooks.web.api import make_app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve", cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """Serve the admin page and API; every call needs ASSETHOOKS_ADMIN_TOKEN when it is set."""
    settings = app.settings
    if settings.admin_token is None and not _loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without ASSETHOOKS_ADMIN_TOKEN; set a token or use 127.0.0.1"
        )
    configure_logging(settings.log_level)
    auth = "token required" if settings.admin_token is not None else "no token: loopback only"
    click.echo(f"admin page on http://{host}:{port}/ ({auth})", err=True)
    web.run_app(make_app(settings, app.migrated_engine, app.webhooks), host=host, port=port, print=None)


COMMANDS = [serve]
