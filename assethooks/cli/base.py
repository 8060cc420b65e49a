"""What every ``assethooks`` command shares: the lazily built application state and error mapping."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import click
from sqlalchemy import Engine

from assethooks.errors import (
    AssetHooksError,
    ConfigError,
    DeliveryFailedError,
    InvalidInputError,
    KafkaUnavailableError,
    NotFoundError,
    StoreUnavailableError,
)
from assethooks.secrets import SecretBox
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
    def box(self) -> SecretBox:
        """How webhook secrets are stored (encrypted when keys are configured)."""
        keys = self.settings.encryption_keys
        return SecretBox(None if keys is None else keys.get_secret_value())

    @cached_property
    def webhooks(self) -> WebhookStore:
        """The webhook subscriptions."""
        return WebhookStore(self.migrated_engine, box=self.box)

    def close(self) -> None:
        """Release the database connections, if any were opened."""
        if "engine" in self.__dict__:
            self.engine.dispose()


def exit_code_for(error: AssetHooksError) -> int:
    """The process exit code for ``error``."""
    return next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), 1)


pass_app = click.make_pass_decorator(App, ensure=True)


class Group(click.Group):
    """A click group that turns project errors into one-line messages with meaningful exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; print an ``AssetHooksError`` as one line and exit with its class's code."""
        try:
            return super().invoke(ctx)
        except AssetHooksError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exit_code_for(exc))
