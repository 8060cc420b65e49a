"""The delivery HTTP client against real servers on loopback that answer in every way a receiver may:
keep-alive, closing, chunked, informational answers, oversized and malformed answers, silence."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from assethooks.errors import (
    BlockedDestinationError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransportError,
)
from assethooks.guard import parse_networks
from assethooks.http import HttpClient, Response

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


class Server:
    """A TCP server on loopback whose every connection runs ``script``; counts connections."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self._tasks.discard(task)

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?a=1"


def keep_alive(answer: bytes) -> Script:
    """Answer every request of the connection with ``answer``."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()

    return script


def once(answer: bytes, *, then_close: bool = True) -> Script:
    """Answer the first request with ``answer``, then close (or keep silent)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if not then_close:
            await asyncio.sleep(3600)

    return script


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[Any]], Any]]:
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    for _ in range(10):  # let closed transports finish closing before the loop goes
        loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def client(**changes: Any) -> HttpClient:
    options: dict[str, Any] = {
        "allowed": LOOPBACK,
        "tls": ssl.create_default_context(),
        "read_limit": 65536,
        **changes,
    }
    return HttpClient(**options)


async def post(http: HttpClient, url: str, *, timeout: float = 5.0, body: bytes = b'{"a":1}') -> Response:
    return await http.post(url, b"X-Test: 1\r\n", body, timeout)


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def test_requests_reuse_one_connection_and_carry_host_and_length(run: Any) -> None:
    async def scenario() -> None:
        seen: list[bytes] = []

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head, body = await read_request(reader)
                seen.append(head + body)
                writer.write(NO_CONTENT)

        async with Server(script) as server:
            http = client()
            statuses = [(await post(http, server.url)).status for _ in range(5)]
            http.close()
        assert statuses == [204] * 5
        assert server.connections == 1
        first = seen[0].decode()
        assert first.startswith("POST /hook?a=1 HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{server.port}\r\n" in first
        assert "Content-Length: 7\r\n" in first
        assert "X-Test: 1\r\n" in first
        assert first.endswith('\r\n\r\n{"a":1}')

    run(scenario())


def test_concurrent_requests_open_a_connection_each_and_keep_them(run: Any) -> None:
    async def scenario() -> None:
        async with Server(keep_alive(NO_CONTENT)) as server:
            http = client()
            for _ in range(3):
                answers = await asyncio.gather(*(post(http, server.url) for _ in range(10)))
                assert {answer.status for answer in answers} == {204}
            http.close()
        assert server.connections == 10

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", 200,
         b"hello"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201, b"ok"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end"),
        (b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbad!", 500, b"bad!"),
    ],
)  # fmt: skip
def test_answers_of_every_shape_are_read(run: Any, answer: bytes, status: int, body: bytes) -> None:
    async def scenario() -> None:
        async with Server(once(answer)) as server:
            http = client()
            response = await post(http, server.url)
            again = await post(http, server.url)  # the closed connection is not reused
            http.close()
        assert (response.status, response.body) == (status, body)
        assert again.status == status

    run(scenario())


def test_retry_after_and_location_are_kept(run: Any) -> None:
    async def scenario() -> None:
        answer = b"HTTP/1.1 429 Slow\r\nretry-after: 30\r\nLOCATION: /x\r\nContent-Length: 0\r\n\r\n"
        async with Server(keep_alive(answer)) as server:
            http = client()
            response = await post(http, server.url)
            http.close()
        assert (response.status, response.retry_after, response.location) == (429, "30", "/x")

    run(scenario())


def test_a_body_beyond_the_read_limit_is_cut_and_its_connection_closed(run: Any) -> None:
    async def scenario() -> None:
        big = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 10_000_000
        async with Server(keep_alive(big)) as server:
            http = client(read_limit=1000)
            first = await post(http, server.url)
            second = await post(http, server.url)
            http.close()
        assert first.status == second.status == 200
        assert first.body == b"x" * 1000
        assert server.connections == 2

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"garbage\r\n\r\n", "invalid HTTP answer"),
        (b"", "closed the connection without an answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n", "in the middle of its answer"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", "switched"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Flood: " + b"y" * 70_000 + b"\r\n\r\n", "longer than 65536 bytes"),
    ],
)
def test_a_broken_answer_is_a_transport_error(run: Any, answer: bytes, problem: str) -> None:
    async def scenario() -> None:
        async with Server(once(answer)) as server:
            http = client()
            with pytest.raises(TransportError, match=problem):
                await post(http, server.url)
            http.close()

    run(scenario())


def test_silence_and_a_trickling_answer_time_out(run: Any) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for char in b"HTTP/1.1 200 OK\r\n":
            writer.write(bytes([char]))
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        for script in (once(b"", then_close=False), trickle):
            async with Server(script) as server:
                http = client()
                loop = asyncio.get_running_loop()
                began = loop.time()
                with pytest.raises(DeliveryTimeoutError):
                    await post(http, server.url, timeout=0.5)
                assert loop.time() - began < 5  # bounded by the deadline, not by the server
                http.close()

    run(scenario())


def test_a_connection_the_server_closed_while_idle_is_not_reused(run: Any) -> None:
    async def scenario() -> None:
        async with Server(once(NO_CONTENT)) as server:  # answers, then closes the connection
            http = client()
            for _ in range(3):
                assert (await post(http, server.url)).status == 204
                async with asyncio.timeout(10):  # the close arrives, as it would between deliveries
                    while http.idle_connections:
                        await asyncio.sleep(0.01)
            http.close()
        assert server.connections == 3

    run(scenario())


def test_unsolicited_bytes_after_an_answer_retire_the_connection(run: Any) -> None:
    async def scenario() -> None:
        extra = NO_CONTENT + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        async with Server(keep_alive(extra)) as server:
            http = client()
            assert (await post(http, server.url)).status == 204
            assert (await post(http, server.url)).status == 204
            http.close()
        assert server.connections == 2

    run(scenario())


def test_destinations_are_checked_before_any_connection(run: Any) -> None:
    async def scenario() -> None:
        async with Server(keep_alive(NO_CONTENT)) as server:
            http = client(allowed=())
            for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
                with pytest.raises(BlockedDestinationError, match="not a public address"):
                    await post(http, f"http://{host}:{server.port}/x")
            for url in (f"http://2130706433:{server.port}/", "ftp://127.0.0.1/", "http://[::1/"):
                with pytest.raises(PermanentDeliveryError, match="invalid URL"):
                    await post(http, url)
            http.close()
        assert server.connections == 0

    run(scenario())


def test_a_refused_connection_says_where(run: Any) -> None:
    async def scenario() -> None:
        async with Server(keep_alive(NO_CONTENT)) as server:
            port = server.port
        http = client()
        with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}"):
            await post(http, f"http://127.0.0.1:{port}/x")
        http.close()

    run(scenario())
