"""The CPU a payload filter costs the dispatcher per delivery, measured in this process (no broker, no sink).

For each sample event (~1 KB, as ``bench.load`` makes them, with a location and a category; half of them
Lisbon laptops) it runs what ``consumers.dispatcher`` runs after the event is parsed: the route lookup, and
for the filtered webhook the JSON parse and the evaluation of the compiled filter (``accepted``). The same
events through a route whose webhook has no filter give the reference.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from bench.load import make_event
from consumers.subscriptions import NO_ROUTE, Route, accepted, compile_filters, routes_by_event
from schemas.webhooks import Webhook, validate_webhook

TYPICAL = "data.location == 'Lisbon' && asset.category == 'Laptops'"
EVENT = "asset.updated"


def sample_events(count: int) -> list[bytes]:
    """``count`` events of ~1 KB; every other one a Lisbon laptop, the others split between Porto laptops
    and Lisbon chairs (so both sides of the ``&&`` are evaluated)."""
    events = []
    for number in range(count):
        envelope = json.loads(make_event(number))
        lisbon = number % 4 != 1
        envelope["data"]["location"] = "Lisbon" if lisbon else "Porto"
        envelope["asset"]["category"] = "Chairs" if number % 4 == 3 else "Laptops"
        events.append(json.dumps(envelope, separators=(",", ":")).encode())
    return events


def _route(expression: str | None) -> dict[str, Route]:
    spec = validate_webhook(name="bench", url="https://example.com/h", events=None, filter=expression)
    now = datetime.now(UTC)
    webhook = Webhook.model_validate({**spec.model_dump(), "id": 1, "created_at": now, "updated_at": now})
    return routes_by_event({EVENT: (webhook,)}, compile_filters([webhook], {}))


def _cpu_per_event(routes: dict[str, Route], events: list[bytes]) -> tuple[float, int]:
    """µs of CPU per event for the dispatcher's choice of webhooks, and how many deliveries it kept."""
    kept = 0
    started = time.process_time_ns()
    for body in events:
        webhooks, filters = routes.get(EVENT, NO_ROUTE)
        if filters is not None:
            webhooks = accepted(webhooks, filters, body)
        kept += len(webhooks)
    return (time.process_time_ns() - started) / 1000 / len(events), kept


def filter_cost(count: int, repeats: int = 5) -> tuple[float, float, float]:
    """(µs without a filter, µs with the typical filter, share of events it accepted), best of ``repeats``."""
    events = sample_events(count)
    plain, filtered = _route(None), _route(TYPICAL)
    without = min(_cpu_per_event(plain, events)[0] for _ in range(repeats))
    measured = [_cpu_per_event(filtered, events) for _ in range(repeats)]
    with_filter = min(cost for cost, _ in measured)
    return without, with_filter, measured[0][1] / count
