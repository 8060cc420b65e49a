"""The CPU each signature scheme costs per delivery, measured in this process (no broker, no sink): what
``consumers.pipeline`` runs to build one attempt's request (``assethooks.delivery.build_request``: the
headers and the signatures over the exact body) for ~1 KB events, per scheme, and with two keys during a
rotation.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from assethooks.delivery import build_request
from assethooks.operator.webhooks import generate_secret
from bench.load import make_event
from schemas.webhooks import Webhook, validate_webhook

SCHEMES = ("seed", "standard", "standard-ed25519")


def _webhook(scheme: str | None, *, rotating: bool = False) -> Webhook:
    fields: dict[str, Any] = {"name": "bench", "url": "https://example.com/h", "events": None}
    if scheme is not None:
        fields |= {"signature": scheme, "secret": generate_secret(scheme)}
    now = datetime.now(UTC)
    extra: dict[str, Any] = {"id": 1, "created_at": now, "updated_at": now}
    if rotating and scheme is not None:
        extra |= {
            "previous_secret": generate_secret(scheme),
            "previous_secret_until": now + timedelta(days=1),
        }
    return Webhook.model_validate({**validate_webhook(**fields).model_dump(), **extra})


def _cpu_per_request(webhook: Webhook, events: list[bytes]) -> float:
    now = datetime.now(UTC)
    started = time.process_time_ns()
    for number, body in enumerate(events):
        build_request(webhook, body, event="asset.updated", delivery_id=f"d-{number}", attempt=1, now=now)
    return (time.process_time_ns() - started) / 1000 / len(events)


def signing_cost(count: int, repeats: int = 5) -> list[tuple[str, float]]:
    """(what, µs of CPU per request built), best of ``repeats``: unsigned, then each scheme, then each
    scheme during a rotation (two signatures)."""
    events = [make_event(number) for number in range(count)]
    cases = [("unsigned", _webhook(None))]
    cases += [(scheme, _webhook(scheme)) for scheme in SCHEMES]
    cases += [(f"{scheme}, during a rotation", _webhook(scheme, rotating=True)) for scheme in SCHEMES]
    return [(what, min(_cpu_per_request(webhook, events) for _ in range(repeats))) for what, webhook in cases]
