"""A development receiver: prints each delivery it gets and whether its signature verifies.

``assethooks receiver --secret S`` is what ``make demo`` points its webhook at; integrators can use it to
see exactly what their endpoint will receive. The key decides the check: a seed secret verifies
``X-Asset-Webhook-Signature``, a ``whsec_`` secret or a ``whpk_`` public key the Standard Webhooks headers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiohttp import web

from assethooks.signing import HMAC_PREFIX, PUBLIC_KEY_PREFIX, verify_delivery, verify_standard_delivery


def describe(request_headers: dict[str, str], body: bytes, secret: str | None, now: float) -> str:
    """One line about a received delivery: event, delivery id, attempt, signature verdict, asset."""
    event = request_headers.get("X-Asset-Webhook-Event", "?")
    delivery = request_headers.get("X-Asset-Webhook-Delivery", "?")
    attempt = request_headers.get("X-Asset-Webhook-Attempt", "?")
    if secret is None:
        verdict = "unsigned (no --secret or --public-key given)"
    else:
        standard = secret.startswith((HMAC_PREFIX, PUBLIC_KEY_PREFIX))
        verify = verify_standard_delivery if standard else verify_delivery
        problem = verify(secret, body, request_headers, now=now)
        verdict = "signature ok" if problem is None else f"SIGNATURE REJECTED: {problem}"
    try:
        asset = json.loads(body).get("asset_id")
    except (ValueError, AttributeError):
        asset = "?"
    return f"{event:<28} asset={asset!s:<6} attempt={attempt} delivery={delivery} {verdict}"


def make_app(secret: str | None, status: int, emit: Callable[[str], None]) -> web.Application:
    """An app that answers every POST with ``status`` after printing it through ``emit``."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        emit(describe(dict(request.headers), body, secret, time.time()))
        return web.Response(status=status, text="received")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


async def serve(host: str, port: int, secret: str | None, status: int, emit: Callable[[str], None]) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(make_app(secret, status, emit))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
