"""What every ``assethooks`` command shares: the lazily built application state, the parameter types of ids
and limits, and the rule that every error is one line with its exit code.

Commands are ``Command`` and ``Group`` (the groups hand these classes on to their commands), which refuse
arguments that are not UTF-8 text — except file names, which may be any bytes — before a command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy import Engine

from assethooks.cli.output import say
from assethooks.errors import AssetHooksError, codes_for
from assethooks.secrets import SecretBox
from assethooks.settings import Settings, load_settings
from assethooks.store.db import make_engine
from assethooks.store.migrate import require_current
from assethooks.store.webhooks import WebhookStore
from schemas.webhooks import MAX_WEBHOOK_ID


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


pass_app = click.make_pass_decorator(App, ensure=True)

F = TypeVar("F", bound=Callable[..., Any])


def with_options(options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator for click options that several commands share, applied as if stacked in the order
    listed."""

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


MAX_ID = 2**63 - 1  # BIGINT: log entry and dead-letter ids, and limits


class WholeNumber(click.types.IntParamType):
    """A whole number from 1 to ``maximum`` (the largest value its column holds): an id or a limit.

    Anything else is a usage error (exit 2), a well-formed but too large id included: its range is a
    property of the type, known without asking the store (or reaching it), and the same rule holds where
    an id is a filter (``--webhook``), where "not found" would not apply.
    """

    def __init__(self, what: str, maximum: int = MAX_ID) -> None:
        self.name = what.rsplit(maxsplit=1)[-1]
        self._what = what
        self._maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The number, or a one-line usage error."""
        if isinstance(value, int) and not isinstance(value, bool):
            number: int | None = value
        else:
            text = str(value).strip()
            fits = text.isascii() and text.isdigit() and len(text) <= len(str(self._maximum))
            number = int(text) if fits else None
        if number is None or not 1 <= number <= self._maximum:
            shown = str(value) if len(str(value)) <= 40 else str(value)[:39] + "…"
            self.fail(
                f"{shown!r} is not {self._what}: use a whole number from 1 to {self._maximum}", param, ctx
            )
        return number


ID = WholeNumber("an id")
WEBHOOK_ID = WholeNumber("a webhook id", MAX_WEBHOOK_ID)
LIMIT = WholeNumber("a limit")


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _texts(item)


def refuse_undecodable(ctx: click.Context, params: list[click.Parameter]) -> None:
    """Refuse arguments that were not UTF-8 (Python hands such bytes on as lone surrogates): no store,
    header, topic or terminal takes them. File names are left alone: they may be any bytes."""
    for param in params:
        if isinstance(param.type, click.Path | click.File) or param.name is None:
            continue
        for text in _texts(ctx.params.get(param.name)):
            bad = next((char for char in text if "\ud800" <= char <= "\udfff"), None)
            if bad is not None:
                byte = ord(bad) - 0xDC00
                which = f" (byte 0x{byte:02x})" if 0x80 <= byte <= 0xFF else ""
                raise click.BadParameter(f"not UTF-8 text{which}", ctx=ctx, param=param)


def _usage_error(exc: click.UsageError) -> NoReturn:
    """Print a usage error as one line, with where to find help, and exit with its code (2)."""
    helps = exc.ctx is not None and not isinstance(exc, click.BadParameter)  # which says what to give
    where = f" (see '{exc.ctx.command_path} --help')" if helps and exc.ctx is not None else ""
    say(f"Error: {exc.format_message()}{where}", err=True)
    raise click.exceptions.Exit(exc.exit_code)


class Command(click.Command):
    """A command whose text arguments are checked to be UTF-8 before it runs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does, then refuse text that is not UTF-8."""
        rest = super().parse_args(ctx, args)
        refuse_undecodable(ctx, self.get_params(ctx))
        return rest


class Group(Command, click.Group):
    """A click group that turns project errors and usage errors into one-line messages with meaningful
    exit codes; its own arguments are checked like a ``Command``'s, and its commands and subgroups are
    ``Command`` and ``Group``."""

    command_class = Command
    group_class = type  # subgroups are of this class too

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own arguments; a usage error is one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; print an ``AssetHooksError`` or a usage error as one line and exit with its
        code."""
        try:
            return super().invoke(ctx)
        except AssetHooksError as exc:
            say(f"Error: {exc}", err=True)
            ctx.exit(codes_for(exc).exit_code)
        except click.UsageError as exc:
            _usage_error(exc)
