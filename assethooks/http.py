"""The HTTP/1.1 client of every delivery: one POST per attempt over pooled keep-alive connections.

It does only what a webhook sender needs, so that a delivery costs little CPU: asyncio transports (uvloop's
when installed), the response parsed by ``httptools`` (llhttp, the parser of Node.js), no redirects, no
proxies, no cookies, no compression. Measured here against the clients the design card allows, see the
README ("Why our own HTTP client").

- **Where it connects**: every address a name resolves to is checked by ``assethooks.guard`` before the
  connection is made to that very address (no second lookup); an IP-literal host is checked as is.
- **What it reads**: at most ``read_limit`` bytes of an answer's body (more closes the connection) and
  ``HEADER_LIMIT`` bytes of its head; only ``Retry-After`` and ``Location`` of its headers are kept.
- **Time**: one deadline per request, connection included (checked every ``DEADLINE_TICK``);
  informational (1xx) answers are skipped.
- **Connections**: kept per scheme, host and port while the server keeps them alive, reused newest first,
  closed after ``IDLE_KEEP`` seconds unused (before a server's own keep-alive timeout is likely to close
  them under a request). A connection carries one request at a time.

Failures are the delivery errors of ``assethooks.errors``: ``TransportError``, ``DeliveryTimeoutError``,
``BlockedDestinationError`` and ``PermanentDeliveryError`` for a request that cannot be sent as given.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, cast

import httptools
from yarl import URL

from assethooks.errors import (
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransportError,
)
from assethooks.guard import IPNetwork, check_address, ip_literal
from schemas.webhooks import check_numeric_host

HEADER_LIMIT: Final = 65536  # bytes of an answer's status line and headers
IDLE_KEEP: Final = 15.0  # seconds an unused connection is kept
DNS_TTL: Final = 10.0  # seconds a checked name resolution is reused
TARGETS_KEPT: Final = 10_000  # parsed URLs remembered
DEADLINE_TICK: Final = 0.1  # seconds between two looks for requests past their deadline


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, the two headers a sender acts on, and the start of the body."""

    status: int
    retry_after: str | None
    location: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL as the client uses it."""

    key: tuple[str, str, int]  # scheme, host, port: the pool
    host: str  # IDNA-encoded, without brackets
    port: int
    tls: bool
    start: bytes  # "POST <path> HTTP/1.1\r\nHost: <host>\r\n"


def _target(url: str) -> _Target:
    parsed = URL(url)  # the host IDNA-normalised: fullwidth digits become an IP literal, as checked
    scheme, host, port = parsed.scheme.lower(), parsed.raw_host, parsed.port
    if scheme not in ("http", "https") or not host or port is None:
        raise PermanentDeliveryError(f"invalid URL: {url[:200]}")
    host = host.strip("[]")
    check_numeric_host(host)  # a number that is not four decimal ones: resolvers disagree on its meaning
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default else f"{shown}:{port}"
    path = parsed.raw_path_qs or "/"
    start = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n"
    try:
        return _Target((scheme, host, port), host, port, scheme == "https", start.encode("ascii"))
    except UnicodeEncodeError:
        raise PermanentDeliveryError(f"invalid URL: {url[:200]}") from None


class _UnansweredCloseError(TransportError):
    """The connection closed before a single byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer, completes a future."""

    def __init__(self, read_limit: int) -> None:
        self._read_limit = read_limit
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self.deadline = 0.0  # of the request in progress (``HttpClient`` times it out)
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._head_done = False
        self._received = 0
        self._head_size = 0
        self._retry_after: str | None = None
        self._location: str | None = None
        self._body: list[bytes] = []
        self._body_size = 0

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; an answer nobody waits for closes the connection."""
        if self._waiter is None:
            self.close()
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"invalid HTTP answer: {exc}"))
        else:
            if not self._head_done and self._received > HEADER_LIMIT and self._waiter is not None:
                self._fail(TransportError(f"the answer's headers are longer than {HEADER_LIMIT} bytes"))

    def eof_received(self) -> bool:
        """Let the transport close; ``connection_lost`` settles what was waiting."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """A waiting request gets what arrived (an answer delimited by the close) or a transport error."""
        self.closed = True
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._head_done:  # a body without a length ends with the connection
            self._complete()
        elif self._received:
            self._fail(TransportError("the server closed the connection in the middle of its answer"))
        else:
            reason = f": {exc}" if exc else ""
            self._fail(_UnansweredCloseError(f"the server closed the connection without an answer{reason}"))

    # -- httptools callbacks --------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep the headers a sender acts on; refuse a head over ``HEADER_LIMIT`` bytes."""
        self._head_size += len(name) + len(value)
        if self._head_size > HEADER_LIMIT and self._waiter is not None:
            self._fail(TransportError(f"the answer's headers are longer than {HEADER_LIMIT} bytes"))
        lowered = name.lower()
        if lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif lowered == b"location":
            self._location = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        """Note the status; an informational answer (1xx) is skipped."""
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return
        self._status = status
        self._head_done = True

    def on_body(self, chunk: bytes) -> None:
        """Keep the body up to the read limit; beyond it, stop reading and close the connection."""
        if not self._head_done or self._waiter is None:
            return
        room = self._read_limit - self._body_size
        self._body.append(chunk[:room])
        self._body_size += min(len(chunk), room)
        if len(chunk) > room:
            self._complete(keep=False)
            self.close()

    def on_message_complete(self) -> None:
        """The answer is complete (after an informational one, wait for the next)."""
        if not self._head_done:
            self._received = 0
            return
        self._complete(keep=self._parser.should_keep_alive())

    # -- requests -------------------------------------------------------------------------------------

    def send(self, head: bytes, body: bytes, deadline: float) -> asyncio.Future[Response]:
        """Write one request; the future completes with its answer or fails by ``deadline``."""
        assert self._transport is not None
        self._reset()
        self.reusable = False
        self.deadline = deadline
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._transport.writelines((head, body))
        return waiter

    def _complete(self, *, keep: bool = False) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():  # an answer nobody asked for: this connection is not sane
            self.close()
            return
        self.reusable = keep and not self.closed
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        waiter.set_result(Response(self._status, self._retry_after, self._location, body))

    def _fail(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def time_out(self) -> None:
        """Give up the request in progress: its deadline passed."""
        self._fail(DeliveryTimeoutError("no answer in time"))

    def close(self) -> None:
        """Close the connection (at once: nothing more is read or written on it)."""
        self.reusable = False
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class HttpClient:
    """Posts requests over pooled connections to allowed destinations only."""

    def __init__(self, *, allowed: tuple[IPNetwork, ...], tls: ssl.SSLContext, read_limit: int) -> None:
        self._allowed = allowed
        self._tls = tls
        self._read_limit = read_limit
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None  # times out requests past their deadline
        self._targets: OrderedDict[str, _Target | PermanentDeliveryError] = OrderedDict()
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}

    @property
    def idle_connections(self) -> int:
        """Open connections waiting for a request."""
        return sum(not connection.closed for idle in self._idle.values() for connection in idle)

    def target(self, url: str) -> _Target:
        """``url`` parsed for sending (remembered); ``PermanentDeliveryError`` when it cannot be used."""
        found = self._targets.get(url)
        if found is None:
            try:
                found = _target(url)
            except ValueError as exc:  # yarl refuses it, e.g. an IPv4 host that is not canonical
                found = PermanentDeliveryError(f"invalid URL: {exc}")
            except PermanentDeliveryError as exc:
                found = exc
            if len(self._targets) >= TARGETS_KEPT:
                self._targets.popitem(last=False)
            self._targets[url] = found
        if isinstance(found, PermanentDeliveryError):
            raise PermanentDeliveryError(str(found))
        return found

    async def post(self, url: str, headers: bytes, body: bytes, timeout: float) -> Response:
        """Post ``body`` with ``headers`` (``Name: value\r\n`` lines, ASCII) to ``url``; the answer, or
        a delivery error. ``Host`` and ``Content-Length`` are set here."""
        target = self.target(url)
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="http-deadlines")
        now = loop.time()
        deadline = now + timeout
        head = b"%b%bContent-Length: %d\r\n\r\n" % (target.start, headers, len(body))
        connection = self._idle_connection(target, now)
        fresh = connection is None
        while True:
            if connection is None:
                connection = await self._connect(target, deadline)
            self._busy.add(connection)
            try:
                return await connection.send(head, body, deadline)
            except _UnansweredCloseError:
                if fresh:
                    raise
                # The server closed this kept-alive connection as the request went out: the common
                # race of keep-alive, answered by one try on a new connection, as other clients do.
                # Should the server have acted on it after all, the receiver sees the same delivery id.
            finally:
                self._release(target, connection)
            connection, fresh = None, True

    async def _sweep(self) -> None:
        """Time out the requests past their deadline: one look every ``DEADLINE_TICK`` seconds costs less
        than a timer per request (a hot path), and the timeout is no shorter than asked."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DEADLINE_TICK)
            now = loop.time()
            for connection in [busy for busy in self._busy if busy.deadline <= now]:
                connection.time_out()

    def _release(self, target: _Target, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection.reusable:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(target.key, []).append(connection)

    def _idle_connection(self, target: _Target, now: float) -> _Connection | None:
        idle = self._idle.get(target.key)
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_KEEP:
                return connection
            connection.close()
        return None

    async def _connect(self, target: _Target, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        self._drop_stale(loop.time())
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await self._addresses(target.host, target.port)
                last: OSError | None = None
                for address in addresses:
                    try:
                        _transport, connection = await loop.create_connection(
                            lambda: _Connection(self._read_limit),
                            address,
                            target.port,
                            ssl=self._tls if target.tls else None,
                            server_hostname=target.host if target.tls else None,
                        )
                        return connection
                    except OSError as exc:  # ssl.SSLError included
                        last = exc
        except TimeoutError:
            raise DeliveryTimeoutError("no connection in time") from None
        shown = f"[{target.host}]" if ":" in target.host else target.host
        raise TransportError(f"cannot connect to {shown}:{target.port}: {_reason(last)}")

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, every one of them allowed (a refused one refuses the host)."""
        literal = ip_literal(host)
        if literal is not None:
            check_address(host, literal, self._allowed)
            return [literal]
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TransportError(f"cannot resolve {host}: {_reason(exc)}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            check_address(host, address, self._allowed)
        if len(self._resolved) > TARGETS_KEPT:
            self._resolved.clear()
        self._resolved[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _drop_stale(self, now: float) -> None:
        for idle in self._idle.values():
            while idle and (idle[0].closed or now - idle[0].idle_since >= IDLE_KEEP):
                idle.pop(0).close()

    def close(self) -> None:
        """Close every connection; requests in progress fail."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.close()


def _reason(error: BaseException | None) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error) if error is not None else ""
    return text.splitlines()[0] if text else type(error).__name__
