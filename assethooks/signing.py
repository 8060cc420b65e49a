"""Signatures: the seed documentation's (§5), ``X-Asset-Webhook-Signature = hex HMAC-SHA256(secret, body)``,
and Standard Webhooks' (standardwebhooks.com): ``webhook-signature: v1,base64(HMAC-SHA256(key,
"{id}.{timestamp}.{body}"))`` with a ``whsec_`` secret, or ``v1a,base64(Ed25519 signature of the same
content)`` with a ``whsk_`` private key (base64 of the 32-byte RFC 8032 seed) whose ``whpk_`` public key
(base64 of the 32-byte public key) receivers verify with.

Pure functions; the receiver-side checks compare in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_HEADER = "X-Asset-Webhook-Signature"
NEXT_SIGNATURE_HEADER = "X-Asset-Webhook-Signature-Next"  # the new secret's, during a rotation
TIMESTAMP_HEADER = "X-Asset-Webhook-Timestamp"
HMAC_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of the exact ``body`` bytes with ``secret``."""
    inner, outer = _pads(secret)
    inner = inner.copy()
    inner.update(body)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


@lru_cache(maxsize=1024)
def _pads(secret: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA256 (RFC 2104) with its key schedule done once per secret: SHA-256 states after the inner
    and the outer padded key. Signing then hashes only the body (a third less work per delivery than
    ``hmac.digest``, which sets the key up every time)."""
    key = secret.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    return inner, outer


_BLOCK = 64  # SHA-256's block size


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` is the seed signature of ``body``; constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1,<base64>`` signature of ``body`` for ``message_id`` at ``timestamp``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()


def ed25519_seed(private_key: str) -> bytes:
    """The 32-byte seed of a ``whsk_`` private key; ``ValueError`` (one line, never quoting the key) if it is
    not one. Besides the spec's 32-byte seed, the 64-byte seed-and-public-key form that libsodium and Go
    write is accepted when its public half belongs to its seed."""
    if not private_key.startswith(PRIVATE_KEY_PREFIX):
        raise ValueError("an Ed25519 private key starts with whsk_ (generate one with --generate-key)")
    try:
        raw = base64.b64decode(private_key.removeprefix(PRIVATE_KEY_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a whsk_ key must be base64 after its prefix") from None
    if len(raw) == 64 and _public_bytes(raw[:32]) == raw[32:]:
        return raw[:32]
    if len(raw) != 32:
        raise ValueError("a whsk_ key must hold the 32-byte Ed25519 seed (or seed and public key, 64 bytes)")
    return raw


def ed25519_public_key(private_key: str) -> str:
    """The ``whpk_`` public key of a ``whsk_`` private key: what receivers verify with (not a secret)."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_public_bytes(ed25519_seed(private_key))).decode()


def new_ed25519_key() -> str:
    """A new random ``whsk_`` private key."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode()


def ed25519_signature(private_key: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1a,<base64>`` signature of ``body`` for ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1a," + base64.b64encode(_private_key(private_key).sign(signed)).decode()


@lru_cache(maxsize=1024)
def _private_key(private_key: str) -> Ed25519PrivateKey:
    """The loaded key, once per key: decoding and expanding the seed costs about as much as a signature."""
    return Ed25519PrivateKey.from_private_bytes(ed25519_seed(private_key))


def _public_bytes(seed: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def standard_signature_for(key: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature a key makes: ``v1a`` for a ``whsk_`` key, ``v1`` for a ``whsec_``
    secret (the prefix names the scheme, as the spec intends)."""
    if key.startswith(PRIVATE_KEY_PREFIX):
        return ed25519_signature(key, message_id, timestamp, body)
    return standard_signature(key, message_id, timestamp, body)


def verify_standard_delivery(
    key: str,
    body: bytes,
    headers: dict[str, str],
    *,
    now: float,
    tolerance: float = 300.0,
) -> str | None:
    """Check a delivery signed the Standard Webhooks way: ``None`` when it is genuine, else why not.

    ``key`` is what the receiver holds: the ``whpk_`` public key (``v1a`` signatures) or the ``whsec_``
    secret (``v1``). Any one matching signature in ``webhook-signature`` suffices (during a rotation it
    lists one per key); ``webhook-timestamp`` must lie within ``tolerance`` seconds of ``now``.
    """
    found = {name.lower(): value for name, value in headers.items()}
    message_id, timestamp = found.get("webhook-id"), found.get("webhook-timestamp")
    listed = (found.get("webhook-signature") or "").split()
    if not message_id or not listed:
        return "no webhook-id or webhook-signature header"
    try:
        sent = int(timestamp or "")
    except ValueError:
        return "missing or malformed webhook-timestamp header"
    try:
        version, matches = _matcher(key, f"{message_id}.{sent}.".encode() + body)
    except ValueError as exc:
        return str(exc)
    if not any(entry.partition(",")[0] == version and matches(entry.partition(",")[2]) for entry in listed):
        return f"no {version} signature matches the body"
    if abs(now - sent) > tolerance:
        return f"timestamp {sent} is more than {tolerance:g}s away from now"
    return None


def _matcher(key: str, signed: bytes) -> tuple[str, Callable[[str], bool]]:
    """The signature version ``key`` checks, and a test of one base64 signature of ``signed``."""
    try:
        raw = base64.b64decode(key.partition("_")[2], validate=True)
    except binascii.Error:
        raw = b""
    if key.startswith(PUBLIC_KEY_PREFIX) and len(raw) == 32:
        verifier = Ed25519PublicKey.from_public_bytes(raw)

        def verifies(signature: str) -> bool:
            try:
                verifier.verify(base64.b64decode(signature, validate=True), signed)
            except (binascii.Error, InvalidSignature):
                return False
            return True

        return "v1a", verifies
    if key.startswith(HMAC_PREFIX) and raw:
        expected = base64.b64encode(hmac.digest(raw, signed, "sha256"))
        return "v1", lambda signature: hmac.compare_digest(expected, signature.encode())
    raise ValueError("the key must be a whpk_ public key (base64 of 32 bytes) or a whsec_ secret")


def verify_delivery(
    secret: str,
    body: bytes,
    headers: dict[str, str],
    *,
    now: float,
    tolerance: float = 300.0,
) -> str | None:
    """Check a received delivery: ``None`` when it is genuine, else why not (one line).

    For receivers: pass the raw request body and the request headers. The signature (from
    ``X-Asset-Webhook-Signature``, or during a secret rotation ``X-Asset-Webhook-Signature-Next``) is
    compared in constant time; ``X-Asset-Webhook-Timestamp`` must lie within ``tolerance`` seconds of
    ``now`` (the receiver's clock), which limits replays.
    """
    found = {name.lower(): value for name, value in headers.items()}
    timestamp = found.get(TIMESTAMP_HEADER.lower())
    signatures = [found.get(name.lower()) for name in (SIGNATURE_HEADER, NEXT_SIGNATURE_HEADER)]
    present = [signature for signature in signatures if signature]
    if not present:
        return f"no {SIGNATURE_HEADER} header"
    if not any(signature_matches(secret, body, signature) for signature in present):
        return "signature does not match the body"
    try:
        sent = int(timestamp or "")
    except ValueError:
        return "missing or malformed X-Asset-Webhook-Timestamp header"
    if abs(now - sent) > tolerance:
        return f"timestamp {sent} is more than {tolerance:g}s away from now"
    return None
