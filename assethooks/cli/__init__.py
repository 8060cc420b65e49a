"""The ``assethooks`` command line: ``assethooks <noun> <verb>``, a thin layer over library calls.

Errors of the tree in ``assethooks.errors`` become one ``Error: …`` line on stderr and an exit code:
2 invalid input or settings, 3 not found, 4 Kafka or the database unreachable, 5 a delivery failed,
1 anything else.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import click
from sqlalchemy import Engine

from assethooks import __version__
from assethooks.errors import (
    AssetHooksError,
    ConfigError,
    DeliveryFailedError,
    InvalidInputError,
    KafkaUnavailableError,
    NotFoundError,
    StoreUnavailableError,
)
from assethooks.logging_setup import configure_logging
from assethooks.settings import Settings, load_settings
from assethooks.store.db import make_engine
from assethooks.store.migrate import require_current
from assethooks.store.webhooks import WebhookStore

_EXIT_CODES: tuple[tuple[type[AssetHooksError], int], ...] = (
    (ConfigError, 2),
    (InvalidInputError, 2),
    (NotFoundError, 3),
    (KafkaUnavailableError, 4),
    (StoreUnavailableError, 4),
    (DeliveryFailedError, 5),
)


class CliError(click.ClickException):
    """An ``AssetHooksError`` shown as one line, with the exit code of its class."""

    def __init__(self, error: AssetHooksError) -> None:
        super().__init__(str(error))
        self.exit_code = next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), 1)


class App:
    """What the commands share, created lazily so that ``--help`` needs no settings."""

    @cached_property
    def settings(self) -> Settings:
        """The effective settings."""
        return load_settings()

    @cached_property
    def engine(self) -> Engine:
        """The SQL store's engine (schema not checked)."""
        return make_engine(self.settings.database_url.get_secret_value())

    @cached_property
    def migrated_engine(self) -> Engine:
        """The SQL store's engine, after checking the schema is current."""
        require_current(self.engine)
        return self.engine

    @cached_property
    def webhooks(self) -> WebhookStore:
        """The webhook subscriptions."""
        return WebhookStore(self.migrated_engine)


pass_app = click.make_pass_decorator(App, ensure=True)


class Group(click.Group):
    """A click group that turns project errors into one-line messages with meaningful exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map ``AssetHooksError`` to ``CliError``."""
        try:
            return super().invoke(ctx)
        except AssetHooksError as exc:
            raise CliError(exc) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asset-webhooks")
@click.pass_context
def main(ctx: click.Context) -> None:
    """asset-webhooks: signed webhook deliveries for asset events on Kafka.

    Settings come from ASSETHOOKS_* environment variables; `assethooks config` shows them.
    """
    ctx.ensure_object(App)
    if not logging.getLogger().handlers:
        # One-shot commands report problems themselves; librdkafka's own retries would only be noise.
        configure_logging("WARNING", kafka_level=logging.CRITICAL)


def _register() -> None:
    from assethooks.cli import admin, publish, run, webhooks

    for module in (admin, webhooks, publish, run):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
