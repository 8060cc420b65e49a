"""The raw limit: a plain aiohttp POST loop, the ceiling for a Python sender on this machine.

Same body size, the same headers (a signature computed per request) and the same concurrency as the
dispatcher's per-webhook limit. Run as ``python -m bench.raw URL COUNT CONCURRENCY BODY_BYTES``; prints
requests per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sys
import time

import aiohttp


async def post_loop(url: str, count: int, concurrency: int, body: bytes) -> float:
    """Send ``count`` signed POSTs with ``concurrency`` workers; return requests per second."""
    left = count
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "bench-raw",
                    "X-Asset-Webhook-Event": "asset.updated",
                    "X-Asset-Webhook-Timestamp": str(int(time.time())),
                    "X-Asset-Webhook-Delivery": "00000000-0000-0000-0000-000000000000",
                    "X-Asset-Webhook-Attempt": "1",
                    "X-Asset-Webhook-Signature": hmac.new(b"secret", body, hashlib.sha256).hexdigest(),
                }
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status >= 300:
                        raise RuntimeError(f"sink answered {answer.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    """Command-line entry: print the measured rate."""
    url, count, concurrency, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rate = asyncio.run(post_loop(url, count, concurrency, b"x" * size))
    print(f"{rate:.1f}")


if __name__ == "__main__":
    main()
