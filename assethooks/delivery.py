"""HTTP delivery: the signed request of one attempt (pure), and the sender that posts it.

One ``HttpSender`` (one ``assethooks.http.HttpClient``, one connection pool) serves every delivery of a
process, the test webhook included. An attempt succeeds on a 2xx answer; any other status, a redirect, a
timeout or a connection error is a failed attempt, described by a ``DeliveryFailedError`` subclass.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Final, Self

from assethooks import __version__
from assethooks.errors import (
    DeliveryFailedError,
    DeliveryTimeoutError,
    EndpointGoneError,
    HttpStatusError,
    PermanentDeliveryError,
)
from assethooks.guard import IPNetwork, parse_networks
from assethooks.http import HttpClient, Response
from assethooks.settings import Settings
from assethooks.signing import (
    HMAC_PREFIX,
    NEXT_SIGNATURE_HEADER,
    PRIVATE_KEY_PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    standard_signature_for,
)
from schemas.webhooks import Webhook

USER_AGENT: Final = f"asset-webhooks/{__version__}"
RESPONSE_KEEP: Final = 4096  # bytes of the answer kept in the delivery log
RESPONSE_READ_LIMIT: Final = 65536  # bytes read at most from an answer; more closes the connection


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """One attempt's POST: URL, exact body bytes, and the header lines (``Name: value\r\n``, ASCII;
    ``Host`` and ``Content-Length`` are added by the client)."""

    url: str
    body: bytes
    head: bytes


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``headers`` as request lines; ``PermanentDeliveryError`` for any that could not be sent as given
    (custom headers are validated when saved: this is the last line of defence)."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise PermanentDeliveryError("the request cannot be sent: a header holds a line break")
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise PermanentDeliveryError("the request cannot be sent: a header is not ASCII") from None


def build_request(
    webhook: Webhook, body: bytes, *, event: str, delivery_id: str, attempt: int, now: datetime
) -> DeliveryRequest:
    """The request for one attempt: the seed's headers, the signature(s) of the webhook's scheme over the
    exact ``body``, and the custom headers (which validation keeps from overriding any of the others).

    During a secret rotation both secrets sign: with the seed scheme the previous secret signs
    ``X-Asset-Webhook-Signature`` (receivers not yet updated keep working) and the new one
    ``X-Asset-Webhook-Signature-Next``; with the standard schemes ``webhook-signature`` lists both (``v1``
    for a ``whsec_`` secret, ``v1a`` for a ``whsk_`` Ed25519 key: a key signs the way its prefix says).

    Raises ``PermanentDeliveryError`` for a webhook whose custom headers cannot be sent as given.
    """
    timestamp = int(now.timestamp())
    signatures = b""
    secrets = webhook.signing_secrets(now)
    if secrets and webhook.signature != "seed":
        keys = [secret for secret in secrets if secret.startswith((HMAC_PREFIX, PRIVATE_KEY_PREFIX))]
        listed = " ".join(standard_signature_for(key, delivery_id, timestamp, body) for key in keys)
        signatures = f"webhook-id: {delivery_id}\r\nwebhook-timestamp: {timestamp}\r\n".encode()
        signatures += f"webhook-signature: {listed}\r\n".encode()
    elif len(secrets) == 2:
        signatures = (
            f"{SIGNATURE_HEADER}: {sign(secrets[1], body)}\r\n"
            f"{NEXT_SIGNATURE_HEADER}: {sign(secrets[0], body)}\r\n"
        ).encode()
    elif secrets:
        signatures = f"{SIGNATURE_HEADER}: {sign(secrets[0], body)}\r\n".encode()
    # The event, the delivery id and the attempt are ours (ASCII); the rest is fixed per webhook.
    head = (
        f"X-Asset-Webhook-Event: {event}\r\n{TIMESTAMP_HEADER}: {timestamp}\r\n"
        f"X-Asset-Webhook-Delivery: {delivery_id}\r\nX-Asset-Webhook-Attempt: {attempt}\r\n"
    ).encode()
    return DeliveryRequest(webhook.url, body, _FIXED.get(webhook) + head + signatures)


class _FixedLines:
    """The header lines that are the same on every attempt to a webhook (content type, user agent, its
    custom headers), encoded once per webhook object (the subscription cache replaces changed ones)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Webhook, bytes | PermanentDeliveryError]] = {}

    def get(self, webhook: Webhook) -> bytes:
        found = self._kept.get(webhook.id)
        if found is None or found[0] is not webhook:
            lines: bytes | PermanentDeliveryError
            try:
                custom = {name: value.get_secret_value() for name, value in webhook.headers.items()}
                lines = header_lines({"Content-Type": "application/json", "User-Agent": USER_AGENT, **custom})
            except PermanentDeliveryError as exc:
                lines = exc
            found = self._kept[webhook.id] = (webhook, lines)
        if isinstance(found[1], PermanentDeliveryError):
            raise PermanentDeliveryError(str(found[1]))
        return found[1]


_FIXED = _FixedLines()


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt got: status, time taken, the start of the answer, and the failure if any."""

    status_code: int | None
    duration_ms: float
    response_body: str | None
    failure: DeliveryFailedError | None

    @property
    def ok(self) -> bool:
        """True when the endpoint answered 2xx."""
        return self.failure is None


class HttpSender:
    """Posts delivery requests through one ``assethooks.http.HttpClient``: pooled connections, checked
    destinations, verified certificates."""

    def __init__(
        self, *, timeout: float, allowed: tuple[IPNetwork, ...] = (), ca_bundle: str | None = None
    ) -> None:
        self._timeout = timeout
        # Certificates are always verified: against the system's CAs, plus a private CA bundle if given.
        tls = ssl.create_default_context()
        if ca_bundle is not None:
            tls.load_verify_locations(cafile=ca_bundle)
        self._client = HttpClient(allowed=allowed, tls=tls, read_limit=RESPONSE_READ_LIMIT)

    @classmethod
    def for_settings(cls, settings: Settings) -> HttpSender:
        """A sender configured from the settings (timeout, allowed ranges, CA bundle)."""
        return cls(
            timeout=settings.delivery_timeout,
            allowed=parse_networks(settings.allowed_cidrs),
            ca_bundle=settings.ca_bundle,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._client.close()

    async def send(self, request: DeliveryRequest) -> AttemptResult:
        """Post ``request`` once and describe the outcome; never raises for delivery failures."""
        started = time.perf_counter()
        status: int | None = None
        answer: str | None = None
        try:
            response = await self._client.post(request.url, request.head, request.body, self._timeout)
            status = response.status
            answer = response.body[:RESPONSE_KEEP].decode("utf-8", errors="replace")
            failure = _status_failure(response, answer)
        except DeliveryTimeoutError:
            failure = DeliveryTimeoutError(f"no answer within {self._timeout:g}s")
        except DeliveryFailedError as exc:
            failure = exc
        duration_ms = (time.perf_counter() - started) * 1000
        return AttemptResult(status, duration_ms, answer, failure)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` header asks for: delay-seconds or an HTTP date (``None`` if neither)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _status_failure(response: Response, answer: str) -> DeliveryFailedError | None:
    status = response.status
    if 200 <= status < 300:
        return None
    location = response.location
    if status == 410:
        return EndpointGoneError("HTTP 410: the endpoint is gone", status_code=status, response_body=answer)
    if status in {429, 503}:
        wait = retry_after_seconds(response.retry_after, time.time())
        if wait is not None:
            return HttpStatusError(
                f"HTTP {status}, retry after {wait:.0f}s",
                status_code=status,
                response_body=answer,
                retry_after=wait,
            )
    if 300 <= status < 400:
        target = f" to {location}" if location else ""
        return HttpStatusError(
            f"HTTP {status}: redirect{target} not followed",
            status_code=status,
            response_body=answer,
            location=location,
        )
    return HttpStatusError(f"HTTP {status}", status_code=status, response_body=answer)
