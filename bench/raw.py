"""The raw loop: signed POSTs in a plain loop, the yardstick for a Python sender on this machine.

``aiohttp`` (the yardstick the targets are set against): a plain aiohttp loop on asyncio's event loop.
``project``: the same loop with the delivery path's own client (``assethooks.http``) on uvloop, to show
what is left of a delivery's cost once the HTTP client is taken out.

Same body size, the same headers (a signature computed per request) and the same concurrency as the
dispatcher's per-webhook limit. Run as ``python -m bench.raw aiohttp|project URL COUNT CONCURRENCY
BODY_BYTES``; prints requests per second and µs of CPU per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import resource
import ssl
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from assethooks.guard import parse_networks
from assethooks.http import HttpClient
from assethooks.loops import event_loop_factory


def _headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "bench-raw",
        "X-Asset-Webhook-Event": "asset.updated",
        "X-Asset-Webhook-Timestamp": str(int(time.time())),
        "X-Asset-Webhook-Delivery": "00000000-0000-0000-0000-000000000000",
        "X-Asset-Webhook-Attempt": "1",
        "X-Asset-Webhook-Signature": hmac.new(b"secret", body, hashlib.sha256).hexdigest(),
    }


async def _workers(count: int, concurrency: int, post: Callable[[], Awaitable[int]]) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await post()
            if status >= 300:
                raise RuntimeError(f"sink answered {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def aiohttp_loop(url: str, count: int, concurrency: int, body: bytes) -> None:
    """Send ``count`` signed POSTs with ``concurrency`` workers through aiohttp."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def post() -> int:
            async with session.post(url, data=body, headers=_headers(body)) as answer:
                await answer.read()
                return answer.status

        await _workers(count, concurrency, post)


async def project_loop(url: str, count: int, concurrency: int, body: bytes) -> None:
    """The same through ``assethooks.http``."""
    client = HttpClient(
        allowed=parse_networks(["127.0.0.0/8"]), tls=ssl.create_default_context(), read_limit=65536
    )

    async def post() -> int:
        lines = "".join(f"{name}: {value}\r\n" for name, value in _headers(body).items()).encode()
        return (await client.post(url, lines, body, 30.0)).status

    try:
        await _workers(count, concurrency, post)
    finally:
        client.close()


def main() -> None:
    """Command-line entry: print the rate and the CPU per request."""
    kind, url = sys.argv[1], sys.argv[2]
    count, concurrency, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    loop_factory = event_loop_factory() if kind == "project" else asyncio.new_event_loop
    run = project_loop if kind == "project" else aiohttp_loop
    body = b"x" * size
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run(url, min(count, 2000), concurrency, body))  # warm up: connections, caches
        used = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        runner.run(run(url, count, concurrency, body))
        elapsed = time.perf_counter() - started
        now = resource.getrusage(resource.RUSAGE_SELF)
    cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
    print(f"{count / elapsed:.1f} {cpu / count * 1e6:.1f}")


if __name__ == "__main__":
    main()
