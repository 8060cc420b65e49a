"""What a user types reaches the library as data: field names never become parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from assethooks.errors import InvalidWebhookError
from assethooks.operator.webhooks import create_webhook, update_webhook
from assethooks.store.webhooks import WebhookStore
from tests.conftest import TestEnv


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
