"""HTTP delivery: the signed request of one attempt (pure), and the sender that posts it (aiohttp).

One ``HttpSender`` (one aiohttp session, one connection pool) serves every delivery of a process, the
test webhook included. An attempt succeeds on a 2xx answer; any other status, a redirect, a timeout or a
connection error is a failed attempt, described by a ``DeliveryFailedError`` subclass.
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

import aiohttp
from yarl import URL

from assethooks import __version__
from assethooks.errors import (
    BlockedDestinationError,
    DeliveryFailedError,
    DeliveryTimeoutError,
    EndpointGoneError,
    HttpStatusError,
    PermanentDeliveryError,
    TransportError,
)
from assethooks.guard import GuardedResolver, IPNetwork, check_host, parse_networks
from assethooks.settings import Settings
from assethooks.signing import (
    NEXT_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    standard_signature,
)
from schemas.webhooks import Webhook

USER_AGENT: Final = f"asset-webhooks/{__version__}"
RESPONSE_KEEP: Final = 4096  # bytes of the answer kept in the delivery log
RESPONSE_READ_LIMIT: Final = 65536  # bytes read at most from an answer; more closes the connection
LITERAL_CHECKS_KEPT: Final = 10_000  # URLs whose host check is remembered


@dataclass(frozen=True)
class DeliveryRequest:
    """One attempt's POST: URL, exact body bytes and headers."""

    url: str
    body: bytes
    headers: dict[str, str]


def build_request(
    webhook: Webhook, body: bytes, *, event: str, delivery_id: str, attempt: int, now: datetime
) -> DeliveryRequest:
    """The request for one attempt: the seed's headers, the signature(s) of the webhook's scheme over the
    exact ``body``, then the custom headers (which validation keeps from overriding any of the others).

    During a secret rotation both secrets sign: with the seed scheme the previous secret signs
    ``X-Asset-Webhook-Signature`` (receivers not yet updated keep working) and the new one
    ``X-Asset-Webhook-Signature-Next``; with the standard scheme ``webhook-signature`` lists both.
    """
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Asset-Webhook-Event": event,
        TIMESTAMP_HEADER: str(timestamp),
        "X-Asset-Webhook-Delivery": delivery_id,
        "X-Asset-Webhook-Attempt": str(attempt),
    }
    secrets = webhook.signing_secrets(now)
    if secrets and webhook.signature == "standard":
        headers["webhook-id"] = delivery_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = " ".join(
            standard_signature(secret, delivery_id, timestamp, body) for secret in secrets
        )
    elif len(secrets) == 2:
        headers[SIGNATURE_HEADER] = sign(secrets[1], body)
        headers[NEXT_SIGNATURE_HEADER] = sign(secrets[0], body)
    elif secrets:
        headers[SIGNATURE_HEADER] = sign(secrets[0], body)
    for name, value in webhook.headers.items():
        headers[name] = value.get_secret_value()
    return DeliveryRequest(webhook.url, body, headers)


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
    """Posts delivery requests through one shared aiohttp session with guarded name resolution."""

    def __init__(
        self,
        *,
        timeout: float,
        allowed: tuple[IPNetwork, ...] = (),
        max_connections: int = 1000,
        ca_bundle: str | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allowed = allowed
        self._max_connections = max_connections
        # Certificates are always verified: against the system's CAs, plus a private CA bundle if given.
        self._tls = ssl.create_default_context()
        if ca_bundle is not None:
            self._tls.load_verify_locations(cafile=ca_bundle)
        self._session: aiohttp.ClientSession | None = None
        self._literal_checks: dict[str, BlockedDestinationError | None] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> HttpSender:
        """A sender configured from the settings (timeout, allowed ranges, CA bundle, connection limit)."""
        return cls(
            timeout=settings.delivery_timeout,
            allowed=parse_networks(settings.allowed_cidrs),
            max_connections=settings.max_in_flight,
            ca_bundle=settings.ca_bundle,
        )

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            resolver=GuardedResolver(self._allowed),
            ssl=self._tls,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def _check_literal(self, url: str) -> None:
        """Refuse an IP-literal host outside the allowed addresses (names are checked when resolved)."""
        refused = self._literal_checks.get(url, ...)
        if refused is ...:
            try:
                # The host as aiohttp will use it: IDNA-normalised, so fullwidth digits become an IP literal.
                check_host(URL(url).raw_host or "", self._allowed)
                refused = None
            except BlockedDestinationError as exc:
                refused = exc
            if len(self._literal_checks) > LITERAL_CHECKS_KEPT:
                self._literal_checks.clear()
            self._literal_checks[url] = refused
        if refused is not None:
            raise BlockedDestinationError(str(refused))

    async def send(self, request: DeliveryRequest) -> AttemptResult:
        """Post ``request`` once and describe the outcome; never raises for delivery failures."""
        assert self._session is not None, "use HttpSender as an async context manager"
        started = time.perf_counter()
        status: int | None = None
        answer: str | None = None
        try:
            # The host as aiohttp will use it: IDNA-normalised, so fullwidth digits become an IP literal.
            self._check_literal(request.url)
            async with self._session.post(
                request.url, data=request.body, headers=request.headers, allow_redirects=False
            ) as response:
                status = response.status
                raw = await response.content.read(RESPONSE_READ_LIMIT)
                if not response.content.at_eof():
                    response.close()  # do not keep a connection with an unread answer
                answer = raw[:RESPONSE_KEEP].decode("utf-8", errors="replace")
                failure = _status_failure(status, response.headers, answer)
        except PermanentDeliveryError as exc:
            failure = exc
        except TimeoutError:
            failure = DeliveryTimeoutError(f"no answer within {self._timeout.total:g}s", status_code=status)
        except aiohttp.InvalidURL as exc:
            failure = PermanentDeliveryError(f"invalid URL: {_first_line(str(exc))}")
        except aiohttp.ClientError as exc:
            failure = TransportError(_describe_client_error(exc), status_code=status)
        except OSError as exc:
            failure = TransportError(f"connection failed: {exc.strerror or exc}", status_code=status)
        except (ValueError, TypeError) as exc:  # the client refused to build the request (UnicodeError too)
            failure = PermanentDeliveryError(f"the request cannot be sent: {_first_line(str(exc))}")
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


def _status_failure(status: int, headers: Mapping[str, str], answer: str) -> DeliveryFailedError | None:
    if 200 <= status < 300:
        return None
    location = headers.get("Location")
    if status == 410:
        return EndpointGoneError("HTTP 410: the endpoint is gone", status_code=status, response_body=answer)
    if status in {429, 503}:
        wait = retry_after_seconds(headers.get("Retry-After"), time.time())
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


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    return _first_line(str(exc) or type(exc).__name__)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text
