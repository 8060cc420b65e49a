"""What a user types reaches the library as data: field names never become parameters, and times out of
range are one-line errors rather than exceptions from deep inside."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from assethooks.durations import parse_moment
from assethooks.errors import ConfigError, InvalidWebhookError
from assethooks.operator.webhooks import create_webhook, update_webhook
from assethooks.store.webhooks import WebhookStore
from tests.conftest import TestEnv

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["settings", "store", "fields", "self", "id", "previous_secret"])
def test_creating_refuses_names_that_are_not_webhook_fields(env: TestEnv, engine: Engine, name: str) -> None:
    store = WebhookStore(engine)
    fields = {"name": "x", "url": "http://127.0.0.1:9/x", "events": None, name: 1}
    with pytest.raises(InvalidWebhookError, match=f"^unknown field '{name}'$"):
        create_webhook(env.settings(), store, fields)
    assert store.list() == []


@pytest.mark.parametrize("name", ["settings", "store", "webhook_id", "changes", "self", "disabled_reason"])
def test_updating_refuses_names_that_are_not_webhook_fields(env: TestEnv, engine: Engine, name: str) -> None:
    store = WebhookStore(engine)
    created = create_webhook(env.settings(), store, {"name": "x", "url": "http://127.0.0.1:9/x"}).webhook
    with pytest.raises(InvalidWebhookError, match=f"^unknown field '{name}'$"):
        update_webhook(env.settings(), store, created.id, {"name": "changed", name: 2})
    with pytest.raises(InvalidWebhookError, match=f"^unknown field '{name}'$"):
        store.update(created.id, **{name: 2})
    assert store.get(created.id) == created


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-23:59",  # a valid local time whose UTC instant is after year 9999
        "0001-01-01T00:00:00+23:59",  # ... or before year 1
        "9999-01-01T00:00:00+00:00",  # beyond what times are accepted for (years 1900 to 8999)
        "9999999999d",
        "9" * 40 + "s",
        "2000000w",
    ],
)
def test_moments_out_of_range_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_moment(text, NOW)
    message = str(raised.value)
    assert text[:30] in message  # quoted, cut after 40 characters
    assert "\n" not in message
    assert "out of range" in message or "too long ago" in message


def test_moments_in_range_are_read_as_utc() -> None:
    assert parse_moment("8999-12-31T23:59:59+00:00", NOW) == datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_moment("1900-01-01T00:00:00Z", NOW) == datetime(1900, 1, 1, tzinfo=UTC)
    assert parse_moment("2026-11-28T14:00:00+02:00", NOW).utcoffset() is not None
    assert parse_moment("2026-11-28T14:00:00+02:00", NOW) == NOW
    assert parse_moment("2h", NOW) == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert parse_moment("2026-11-28T12:00:00", NOW) == NOW
