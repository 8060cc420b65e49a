"""Property-based tests through the real pipeline: no generated webhook configuration and no generated
event value stops a process. What is valid is delivered, signed, byte for byte; what is not is refused when
saved (one line, exit 2) or dead-lettered with its reason.

The expectations come from a reference written here (the standard library's strict JSON and the seed's
envelope), not from the code under test. ``make test`` runs a few examples; ``make chaos``
(``ASSETHOOKS_CHAOS_SCALE=long``) runs many.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from assethooks.cli import main
from assethooks.store.webhooks import WebhookStore
from schemas.events import EventName
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, DeadLetterKind, header_value
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import Receiver, Service, wait_until

pytestmark = pytest.mark.chaos

LONG = os.environ.get("ASSETHOOKS_CHAOS_SCALE", "short") == "long"
EXAMPLES = 200 if LONG else 12
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = "property-secret"
ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


# -- the reference: what a valid event is, independently of schemas.events ------------------------------


class _NotStrictError(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _NotStrictError("repeated key")
    return dict(pairs)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotStrictError("overflow")
    return number


def _constant(text: str) -> float:
    raise _NotStrictError(text)


def _no_lone_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return not any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, dict):
        return all(_no_lone_surrogates(key) and _no_lone_surrogates(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_no_lone_surrogates(item) for item in value)
    return True


def reference_valid(raw: bytes) -> bool:
    """Strict JSON (RFC 8259, UTF-8, unique keys, finite numbers) in the seed's envelope."""
    try:
        document = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique, parse_float=_finite, parse_constant=_constant
        )
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return False
    if not isinstance(document, dict) or not _no_lone_surrogates(document):
        return False
    names = {name.value for name in EventName}
    asset_id = document.get("asset_id", "missing")
    timestamp = document.get("timestamp")
    if not (isinstance(timestamp, str) and ISO_DATE_TIME.match(timestamp)):
        return False
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    id_ok = (
        isinstance(asset_id, int) and not isinstance(asset_id, bool) and -(2**63) <= asset_id < 2**63
    ) or (asset_id is None and document.get("event") == "asset.deleted")
    return (
        document.get("event") in names
        and moment.tzinfo is not None
        and isinstance(document.get("source"), str)
        and id_ok
        and isinstance(document.get("asset"), dict)
        and isinstance(document.get("data"), dict)
    )


# -- generated events -----------------------------------------------------------------------------------

HUGE = 10**420
numbers = (
    st.integers()
    | st.integers(min_value=-HUGE, max_value=HUGE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 1e308, -1e-308, 2**63, -(2**63) - 1, 10**400])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59), timezones=offsets
)
times = moments.map(lambda moment: moment.isoformat())
dates = st.dates().map(lambda day: day.isoformat()) | times | st.text(max_size=12)
facts = st.fixed_dictionaries(
    {},
    optional={
        "quantity": numbers | st.text(max_size=5),
        "min_quantity": numbers,
        "due_date": dates,
        "warranty_end_date": dates,
        "maintenance_date": dates,
        "checkout_id": json_values | st.text(min_size=100, max_size=300),
    },
)
envelopes = st.fixed_dictionaries(
    {
        "event": st.sampled_from([name.value for name in EventName]),
        "timestamp": times,
        "source": st.text(max_size=40),
        "asset_id": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "asset": st.dictionaries(st.text(max_size=10), json_values, max_size=5),
        "data": st.tuples(facts, st.dictionaries(st.text(max_size=10), json_values, max_size=4)).map(
            lambda parts: {**parts[1], **parts[0]}
        ),
    }
)

# What can be done to a valid event's bytes to make it something else (or leave it valid).
MUTATIONS = (
    "none",
    "overflowing number",
    "NaN",
    "Infinity",
    "repeated event key",
    "numeric timestamp",
    "asset_id beyond 64 bits",
    "null asset_id",
    "truncated",
    "not UTF-8",
    "lone surrogate",
)


@dataclass(frozen=True)
class Record:
    """One generated record and whether the reference calls it valid."""

    body: bytes
    mutation: str

    @property
    def valid(self) -> bool:
        return reference_valid(self.body)


def encode(document: dict[str, Any], mutation: str, compact: bool, ascii_only: bool) -> bytes:
    probe = uuid.uuid4().hex  # every record's bytes are unique: that is how its outcome is found
    document = {**document, "data": {**document["data"], "probe": probe}}
    if mutation == "numeric timestamp":
        document["timestamp"] = 1764331200
    elif mutation == "asset_id beyond 64 bits":
        document["asset_id"] = 2**63
    elif mutation == "null asset_id":
        document["asset_id"] = None
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(document, ensure_ascii=ascii_only, separators=separators)
    marker = f'"probe"{separators[1]}"{probe}"'
    replacements = {
        "overflowing number": f'"probe"{separators[1]}1e400',
        "NaN": f'"probe"{separators[1]}NaN',
        "Infinity": f'"probe"{separators[1]}-Infinity',
        "lone surrogate": f'"probe"{separators[1]}"\\udc80{probe}"',
    }
    if mutation in replacements:
        text = text.replace(marker, replacements[mutation] + f'{separators[0]}"p2"{separators[1]}"{probe}"')
    if mutation == "repeated event key":
        text = '{"event"' + separators[1] + '"asset.deleted"' + separators[0] + text[1:]
    raw = text.encode("utf-8", "surrogatepass")
    if mutation == "truncated":
        raw = raw[: len(raw) // 2]
    elif mutation == "not UTF-8":
        raw = raw.replace(probe.encode(), b"\xff\xfe" + probe.encode(), 1)
    return raw


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    found = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        mutation = draw(st.sampled_from(MUTATIONS))
        body = encode(draw(envelopes), mutation, draw(st.booleans()), draw(st.booleans()))
        found.append(Record(body, mutation))
    return found


# -- the running pipeline and what came out of it ------------------------------------------------------------


class Outcomes:
    """Reads what reached the dead-letter topic, by original bytes."""

    def __init__(self, env: TestEnv) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": env["kafka_bootstrap"], "group.id": f"probe-{uuid.uuid4().hex}"}
        )
        topic = env["dlq_topic"]
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
        self.dead: dict[bytes, DeadLetter] = {}

    def read(self) -> None:
        for record in self._consumer.consume(500, 0.2):
            if record.error() is None:
                raw = header_value(record.headers(), DEAD_LETTER_HEADER) or b""
                self.dead[record.value() or b""] = DeadLetter.model_validate_json(raw)

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Pipeline:
    env: TestEnv
    receiver: Receiver
    service: Service
    outcomes: Outcomes
    producer: Producer

    def publish(self, *bodies: bytes) -> None:
        for body in bodies:
            self.producer.produce(self.env["source_topic"], body)
        assert self.producer.flush(30) == 0

    def alive(self) -> None:
        assert self.service.running, self.service.output()[-3000:]


@pytest.fixture
def pipeline(env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path) -> Iterator[Pipeline]:
    """``run all`` with one webhook for every event, and readers of what came out."""
    WebhookStore(engine).create(
        validate_webhook(name="all", url=receiver.url("/all"), events=None, secret=SECRET)
    )
    outcomes = Outcomes(env)
    running = Service("all", env.values, tmp_path / "run.log").start()
    try:
        running.wait_assigned()
        yield Pipeline(
            env, receiver, running, outcomes, Producer({"bootstrap.servers": env["kafka_bootstrap"]})
        )
        log = running.output()
        assert running.running, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        running.stop()
        outcomes.close()


@PROPERTY
@given(batch=batches())
def test_every_generated_event_is_delivered_or_dead_lettered_with_its_reason(
    pipeline: Pipeline, batch: list[Record]
) -> None:
    pipeline.publish(*(record.body for record in batch))
    delivered: dict[bytes, Any] = {}

    def accounted() -> bool:
        pipeline.outcomes.read()
        delivered.update({request.body: request for request in pipeline.receiver.requests("/all")})
        return all(record.body in delivered or record.body in pipeline.outcomes.dead for record in batch)

    wait_until(accounted, what="every record delivered or dead-lettered")
    pipeline.alive()
    for record in batch:
        event(f"{record.mutation}: {'valid' if record.valid else 'invalid'}")
        if record.valid:
            assert record.body in delivered, (record.mutation, record.body[:300])
            signature = delivered[record.body].header("X-Asset-Webhook-Signature")
            assert signature == hmac.new(SECRET.encode(), record.body, hashlib.sha256).hexdigest()
        else:
            letter = pipeline.outcomes.dead.get(record.body)
            assert letter is not None, (record.mutation, record.body[:300])
            assert letter.kind is DeadLetterKind.INVALID_EVENT
            assert letter.reason
            assert "\n" not in letter.reason


# -- generated webhook configurations through the CLI -------------------------------------------------------

# Hosts that must be refused when saved although loopback is allowed: odd IPv4 forms, translated IPv6 forms
# of loopback (refused whatever is allowed), invisible characters.
REFUSED_HOSTS = [
    "2130706433",
    "127.1",
    "0x7f.0.0.1",
    "[::ffff:0:7f00:1]",
    "[64:ff9b:1::7f00:1]",
    "exa\u00admple.com",
    "ex\u200bample.com",
]
# Each field is plausible most of the time (so that many configurations are saved and delivered) and
# anything at all otherwise.
plausible = st.text(st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"]), max_size=60)
names = plausible.filter(str.strip) | plausible | st.text(max_size=210) | st.text(min_size=190, max_size=210)
tokens = st.text("!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1)
header_names = (
    tokens.map(lambda name: f"X-{name}")
    | st.text(max_size=12)
    | st.sampled_from(["Expect", "Host", "X-Trail\n", "Content-Length", "Transfer-Encoding", "User-Agent"])
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30) | st.text(
    max_size=20
)


@dataclass(frozen=True)
class Config:
    """One generated ``webhooks create``."""

    name: str
    host: str | None  # None: the receiver's address; else a name or address on its port
    path: str
    secret: str | None
    headers: tuple[tuple[str, str], ...]


configs = st.builds(
    Config,
    name=names,
    host=st.none() | st.none() | st.just("localhost") | st.sampled_from(REFUSED_HOSTS),
    path=plausible | st.text(max_size=30),
    secret=st.none() | plausible.filter(bool) | st.text(max_size=20) | st.text(min_size=500, max_size=520),
    headers=st.lists(st.tuples(header_names, header_values), max_size=3).map(tuple),
)


@PROPERTY
@given(config=configs)
def test_a_generated_webhook_is_saved_and_delivered_to_or_refused_in_one_line(
    pipeline: Pipeline, engine: Engine, config: Config
) -> None:
    probe = uuid.uuid4().hex
    url = f"http://{config.host or '127.0.0.1'}:{pipeline.receiver.port}/p/{probe}/{config.path}"
    args = ["webhooks", "create", "--name", config.name, "--url", url, "--all-events", "--json"]
    args += ["--header", f"X-Probe: {probe}"]
    for name, value in config.headers:
        args += ["--header", f"{name}: {value}"]
    if config.secret is not None:
        args += ["--secret", config.secret]
    result = CliRunner().invoke(main, args, env=pipeline.env.values)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if config.host in REFUSED_HOSTS:
        assert result.exit_code == 2, result.output
    event("saved" if result.exit_code == 0 else "refused")
    if result.exit_code == 2:
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("Error: ")
        assert not [hook for hook in WebhookStore(engine).list() if probe in hook.url]
        return
    created = json.loads(result.stdout)
    webhook = WebhookStore(engine).get(created["id"])
    try:
        body = json.dumps({**json.loads(_SAMPLE), "data": {"probe": probe}}).encode()
        wait_until(lambda: _loaded(pipeline, webhook.id), what="the running process to load the webhook")
        pipeline.publish(body)
        try:
            requests = wait_until(
                lambda: [r for r in pipeline.receiver.requests() if r.header("X-Probe") == probe],
                what=f"the delivery to {url!r}",
            )
        except AssertionError:
            said = [
                line for line in pipeline.service.output().splitlines() if f"webhook={webhook.id} " in line
            ]
            raise AssertionError(f"{config!r} not delivered: {said[-5:]}") from None
        pipeline.alive()
        (request,) = requests
        assert request.body == body
        if webhook.secret is not None:
            expected = hmac.new(webhook.secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
            assert request.header("X-Asset-Webhook-Signature") == expected
        for header, stored in webhook.headers.items():
            assert request.header(header) == stored.get_secret_value()
    finally:
        WebhookStore(engine).delete(webhook.id)


_SAMPLE = (
    '{"event":"asset.created","timestamp":"2026-11-28T12:00:00+00:00","source":"perfex_assets_module",'
    '"asset_id":1,"asset":{"id":1},"data":{}}'
)


def _loaded(pipeline: Pipeline, webhook_id: int) -> bool:
    return f"webhook {webhook_id} added" in pipeline.service.output()
