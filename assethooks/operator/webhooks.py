"""Saving webhooks as the CLI and the admin API both do: validated, destination checked, secrets made here.

Whatever the front end, a webhook is saved only when every field is valid and its URL is an allowed
destination; the warnings (plain http, a host that does not resolve yet) go back to the caller to show.
Fields arrive as a mapping, never as keyword arguments, so no name a user types can reach a parameter.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from secrets import token_bytes, token_urlsafe
from typing import Any

from assethooks.errors import BlockedDestinationError, InvalidWebhookError
from assethooks.guard import check_destination, parse_networks
from assethooks.settings import Settings
from assethooks.signing import new_ed25519_key
from assethooks.store.webhooks import WebhookStore
from schemas.webhooks import Webhook, WebhookSpec, validate_webhook


@dataclass
class Saved:
    """A saved webhook and what the operator should be told about it."""

    webhook: Webhook
    warnings: list[str] = field(default_factory=list)


def generate_secret(scheme: str) -> str:
    """A strong secret for ``scheme``: 32 random bytes (``whsec_``-prefixed base64 for Standard Webhooks),
    or for ``standard-ed25519`` a new Ed25519 private key (``whsk_``), which is never shown: only its public
    key is."""
    if scheme == "standard-ed25519":
        return new_ed25519_key()
    if scheme == "standard":
        return "whsec_" + base64.b64encode(token_bytes(32)).decode()
    return token_urlsafe(32)


def check_generated(scheme: str, *, secret: bool, key: bool, names: tuple[str, str]) -> None:
    """Refuse asking for the wrong kind of generated credential: a key pair belongs to ``standard-ed25519``
    (whose private key is never shown), a shown-once secret to the other schemes. ``names`` are what the
    caller calls the two requests (``--generate-secret``/``--generate-key`` or the API's fields)."""
    ask_secret, ask_key = names
    if secret and key:
        raise InvalidWebhookError(f"use either {ask_secret} or {ask_key}, not both")
    if key and scheme != "standard-ed25519":
        raise InvalidWebhookError(
            f"{ask_key} makes an Ed25519 key pair: it is for the standard-ed25519 signature"
        )
    if secret and scheme == "standard-ed25519":
        raise InvalidWebhookError(
            f"the standard-ed25519 signature uses a key pair: ask for {ask_key} "
            "(its public key is shown, the private key never)"
        )


def parse_header_lines(lines: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Custom headers from ``Name: value`` lines."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, content = line.partition(":")
        if not sep or not name.strip():
            raise InvalidWebhookError(f"header {line!r} must look like 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def destination_warnings(settings: Settings, url: str) -> list[str]:
    """Refuse a URL whose host is, or resolves to, a refused address; return what to warn about."""
    try:
        warning = check_destination(url, parse_networks(settings.allowed_cidrs))
    except BlockedDestinationError as exc:
        raise InvalidWebhookError(str(exc)) from None
    warnings = [warning] if warning else []
    if url.lower().startswith("http://"):
        warnings.append("the URL is plain http; use https so payloads and signatures travel encrypted.")
    return warnings


def webhook_fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` as a plain dict once every name in it is a ``WebhookSpec`` field; ``InvalidWebhookError``
    naming the first other one."""
    for name in given:
        if name not in WebhookSpec.model_fields:
            raise InvalidWebhookError(f"unknown field {name!r}")
    return dict(given)


def create_webhook(settings: Settings, store: WebhookStore, fields: Mapping[str, Any]) -> Saved:
    """Validate ``fields`` (those of ``WebhookSpec``), check the destination, save."""
    spec = validate_webhook(**webhook_fields(fields))
    warnings = destination_warnings(settings, spec.url)
    return Saved(store.create(spec), warnings)


def update_webhook(
    settings: Settings, store: WebhookStore, webhook_id: int, changes: Mapping[str, Any]
) -> Saved:
    """Apply ``changes`` to a webhook (validated as a whole), checking a new URL's destination first."""
    chosen = webhook_fields(changes)
    if not chosen:
        raise InvalidWebhookError("nothing to change")
    changed = store.get(webhook_id).with_changes(**chosen)  # every field valid before the URL is checked
    warnings = destination_warnings(settings, changed.url) if "url" in chosen else []
    return Saved(store.update(webhook_id, **chosen), warnings)
