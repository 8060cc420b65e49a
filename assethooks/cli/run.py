"""``assethooks run dispatcher|retrier|all``: the long-running consumer-group processes.

SIGTERM or SIGINT stops fetching, finishes (or leaves uncommitted) the work in flight, commits and exits 0.
"""

from __future__ import annotations

import asyncio
import signal

import click

from assethooks.cli.base import App, pass_app
from assethooks.logging_setup import configure_logging
from consumers.service import ROLES, serve


@click.command("run")
@click.argument("role", type=click.Choice([*ROLES, "all"]))
@click.option("--log-level", default=None, help="Log level (default: ASSETHOOKS_LOG_LEVEL or INFO).")
@click.option("--json-logs", is_flag=True, help="Write logs as JSON lines.")
@click.option(
    "--metrics-port", type=int, envvar="ASSETHOOKS_METRICS_PORT", help="Serve Prometheus /metrics here."
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address of the metrics endpoint."
)
@pass_app
def run(
    app: App, role: str, log_level: str | None, json_logs: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """Run the dispatcher, the retrier, or both in one process (small installs)."""
    settings = app.settings
    configure_logging(log_level or settings.log_level, json_lines=json_logs, batched=True)
    roles = ROLES if role == "all" else (role,)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        address = None if metrics_port is None else (metrics_host, metrics_port)
        await serve(settings, roles, stop, metrics_address=address)

    asyncio.run(main())


COMMANDS = [run]
