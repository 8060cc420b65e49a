"""The alerts cron producer: publishes the ``alert.*`` events the asset-state projection calls for.

For each due alert it claims the alert's condition in the SQL store, publishes the event to the source topic
(keyed by asset id, acknowledged by the broker), then records it as sent. A second run, or a concurrent one,
finds the condition claimed and skips it. A producer that dies after claiming and before publishing leaves
a claim that expires after ``alert_claim_lease``, and the next run sends the alert: at least once, never
lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from assethooks.alerts import due_alerts, envelope
from assethooks.clock import utc_now
from assethooks.settings import Settings
from assethooks.store.assets import all_states, claim, mark_sent, record_alerts_run, sent_alerts
from assethooks.store.models import AlertRunRow
from producers.events import EventPublisher

log = logging.getLogger(__name__)


@dataclass
class AlertReport:
    """What one run did."""

    due: int = 0
    sent: list[str] = field(default_factory=list)  # alert keys
    already: int = 0  # sent (or being sent) by an earlier or concurrent run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


def producer_name() -> str:
    """Who claims alerts: host and process, for the record."""
    return f"{socket.gethostname()}:{os.getpid()}"


def produce_alerts(settings: Settings, engine: Engine, now: datetime) -> AlertReport:
    """Publish every alert due at ``now`` that no run has claimed yet."""
    due = due_alerts(
        all_states(engine),
        now,
        warranty_window=timedelta(seconds=settings.warranty_window),
        maintenance_window=timedelta(seconds=settings.maintenance_window),
    )
    report = AlertReport(due=len(due))
    done = {key for key, _event, sent in sent_alerts(engine) if sent is not None}
    claimer = producer_name()
    claimed = []
    with EventPublisher(settings) as publisher:
        for alert in due:
            if alert.key in done or not claim(engine, alert, now, claimer, settings.alert_claim_lease):
                report.already += 1
                continue
            body = envelope(alert, now)
            if body is None:
                report.failed.append((alert.key, f"asset id {alert.asset_id!r} is not a number"))
                continue
            publisher.publish(json.dumps(body, separators=(",", ":")).encode(), label=alert.key)
            claimed.append(alert.key)
    refused = dict(publisher.report.failed)
    if "(pending)" in refused:  # some were not acknowledged in time, which ones is not known: none count
        refused.update(dict.fromkeys(claimed, refused["(pending)"]))
    for key in claimed:
        if key in refused:
            report.failed.append((key, refused[key]))  # the claim expires; a later run sends it
        else:
            mark_sent(engine, key, now)
            report.sent.append(key)
            log.info("alert sent: %s", key)
    record_alerts_run(
        engine,
        AlertRunRow(
            at=now,
            finished_at=utc_now(),
            due=report.due,
            sent=len(report.sent),
            already=report.already,
            failed=len(report.failed),
        ),
    )
    return report
