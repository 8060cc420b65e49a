"""The ``assethooks`` command line: ``assethooks <noun> <verb>``, a thin layer over library calls.

Errors of the tree in ``assethooks.errors`` become one ``Error: …`` line on stderr and an exit code:
2 invalid input or settings, 3 not found, 4 Kafka or the database unreachable, 5 a delivery failed,
1 anything else.
"""

from __future__ import annotations

import logging

import click

from assethooks import __version__
from assethooks.cli import (
    admin,
    assets,
    dlq,
    logs,
    publish,
    receiver,
    replay,
    run,
    secrets,
    serve,
    status,
    webhooks,
)
from assethooks.cli.base import App, Group
from assethooks.logging_setup import configure_logging


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asset-webhooks")
@click.pass_context
def main(ctx: click.Context) -> None:
    """asset-webhooks: signed webhook deliveries for asset events on Kafka.

    Settings come from ASSETHOOKS_* environment variables; `assethooks config` shows them.
    """
    ctx.call_on_close(ctx.ensure_object(App).close)
    if not logging.getLogger().handlers:
        # One-shot commands report problems themselves; librdkafka's own retries would only be noise.
        configure_logging("WARNING", kafka_level=logging.CRITICAL)


for _module in (admin, webhooks, publish, run, status, logs, dlq, replay, assets, receiver, secrets, serve):
    for _command in _module.COMMANDS:
        main.add_command(_command)
