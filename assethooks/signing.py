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
