"""The event loop of the long-running processes: uvloop's where it is installed (Linux and macOS), else
asyncio's. uvloop halves the CPU an HTTP request costs the delivery path (see the README's figures)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The fastest event loop available here."""
    try:
        import uvloop  # noqa: PLC0415 (optional: no wheels for Windows)
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
