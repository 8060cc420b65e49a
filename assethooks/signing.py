"""Signatures of the seed documentation (§5): ``X-Asset-Webhook-Signature = hex HMAC-SHA256(secret, body)``.

Pure functions; the receiver-side check compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of the exact ``body`` bytes with ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` is the seed signature of ``body``; constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())


def verify_delivery(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float,
    tolerance: float = 300.0,
) -> str | None:
    """Check a received delivery: ``None`` when it is genuine, else why not (one line).

    For receivers: pass the raw request body and the ``X-Asset-Webhook-Signature`` and
    ``X-Asset-Webhook-Timestamp`` headers. The signature is compared in constant time; the timestamp must
    lie within ``tolerance`` seconds of ``now`` (the receiver's clock), which limits replays.
    """
    if not signature:
        return "no X-Asset-Webhook-Signature header"
    if not signature_matches(secret, body, signature):
        return "signature does not match the body"
    try:
        sent = int(timestamp or "")
    except ValueError:
        return "missing or malformed X-Asset-Webhook-Timestamp header"
    if abs(now - sent) > tolerance:
        return f"timestamp {sent} is more than {tolerance:g}s away from now"
    return None
