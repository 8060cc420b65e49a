"""Webhook subscriptions: the seed's "New Webhook" form (§2) as a validated contract."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from assethooks.errors import InvalidWebhookError
from assethooks.signing import PUBLIC_KEY_PREFIX, ed25519_public_key, ed25519_seed
from schemas.events import EventName
from schemas.filters import check_filter

MASK: Final = "****"
MAX_NAME = 200
MAX_WEBHOOK_ID = 2**31 - 1  # webhook ids, and the webhook_id columns, are INTEGER
MAX_URL = 2048
MAX_SECRET_BYTES = 512  # what the store's column holds once encrypted
MAX_HEADERS = 50
MAX_HEADER_NAME = 100
MAX_HEADER_VALUE = 4096

# Headers every delivery sets itself; a custom header may never replace one of them.
DELIVERY_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "host",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
DELIVERY_HEADER_PREFIX: Final = "x-asset-webhook-"
# Headers that change how the request travels rather than what it says: a custom header may not set them
# either (``Expect: 100-continue`` alone would make every attempt wait for its timeout).
TRANSPORT_HEADERS: Final = frozenset({"expect", "te", "trailer", "upgrade", "keep-alive", "proxy-connection"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name; used with fullmatch
# Printable ASCII, space and tab: what every receiver reads the same way (RFC 9110 field content).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Characters that reorder or hide text on screen: refused in names and URLs, where they could make one
# webhook look like another.
_BIDI_CONTROLS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


SignatureScheme = Literal["seed", "standard", "standard-ed25519"]
STANDARD_PREFIX: Final = "whsec_"


def check_standard_secret(secret: str) -> None:
    """Check a Standard Webhooks secret: ``whsec_`` then base64 of 24 to 64 random bytes."""
    if not secret.startswith(STANDARD_PREFIX):
        raise ValueError(
            "a standard signature secret starts with whsec_ (generate one with --generate-secret)"
        )
    try:
        key = base64.b64decode(secret.removeprefix(STANDARD_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a whsec_ secret must be base64 after its prefix") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a whsec_ secret must hold 24 to 64 bytes")


MAX_RATE = 100_000  # deliveries per second or per minute
_RATE_LIMIT = re.compile(r"\s*(\d{1,9})\s*/\s*(s|sec|second|m|min|minute)\s*", re.IGNORECASE)


def parse_rate_limit(text: str) -> tuple[int, int]:
    """``"20/s"`` or ``"50/m"`` as (deliveries, per seconds); ``ValueError`` naming the problem."""
    found = _RATE_LIMIT.fullmatch(text)
    if found is None:
        raise ValueError(f"rate limit {text[:40]!r} is not a rate such as 20/s or 50/m")
    count, unit = int(found[1]), found[2].lower()
    if not 1 <= count <= MAX_RATE:
        raise ValueError(f"a rate limit allows 1 to {MAX_RATE:,} deliveries per second or minute")
    return count, 1 if unit.startswith("s") else 60


def is_delivery_header(name: str) -> bool:
    """True when ``name`` is a header that deliveries set and custom headers may not override."""
    lowered = name.lower()
    return lowered in DELIVERY_HEADERS or lowered.startswith(DELIVERY_HEADER_PREFIX)


def check_header(name: str, value: str) -> None:
    """Refuse a custom header that could not be sent as given, or would change the request's meaning:
    the one check for the CLI, the API and the sender. The value is never shown in the message."""
    if not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
        shown = name if len(name) <= MAX_HEADER_NAME else name[:MAX_HEADER_NAME] + "…"
        raise ValueError(f"invalid header name {shown!r}: letters, digits and !#$%&'*+.^_`|~- only")
    if is_delivery_header(name):
        raise ValueError(f"custom header {name!r} would override a delivery header")
    if name.lower() in TRANSPORT_HEADERS:
        raise ValueError(f"custom header {name!r} is not allowed: it changes how the request is sent")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} value must be one line")
    if not _HEADER_VALUE.fullmatch(value):
        raise ValueError(f"header {name!r} value must be printable ASCII")
    if len(value) > MAX_HEADER_VALUE:
        raise ValueError(f"header {name!r} value is longer than {MAX_HEADER_VALUE} characters")


def parse_event_names(names: Iterable[str]) -> tuple[EventName, ...]:
    """Turn event names into ``EventName`` values, in order and without repeats.

    Raises ``ValueError`` naming the unknown event and listing the valid ones.
    """
    valid = {item.value: item for item in EventName}
    chosen: dict[EventName, None] = {}
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown event {name!r}; valid events: {', '.join(valid)}")
        chosen[valid[name]] = None
    return tuple(chosen)


def check_printable(value: str, what: str, *, allow_format: bool = True) -> str:
    """Refuse control characters (NUL, escapes, line breaks), lone surrogates (bytes that were not UTF-8)
    and bidi controls: no store, header, terminal or log line takes them. With ``allow_format=False``
    every format character (zero-width, soft hyphen) is refused too."""
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc" and char != "\t":
            raise ValueError(f"{what} must not contain control characters")
        if category == "Cs":
            raise ValueError(f"{what} must be valid UTF-8 text")
        if char in _BIDI_CONTROLS or (category == "Cf" and not allow_format):
            raise ValueError(f"{what} must not contain invisible formatting characters (U+{ord(char):04X})")
    return value


def check_url(url: str) -> str:
    """Check that ``url`` is an absolute http(s) URL with a host; return it stripped."""
    url = url.strip()
    if not url:
        raise ValueError("URL must not be empty")
    check_printable(url, "URL", allow_format=False)
    if len(url) > MAX_URL:
        raise ValueError(f"URL is longer than {MAX_URL} characters")
    if any(char.isspace() for char in url):
        raise ValueError("URL must not contain spaces")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValueError(f"URL must start with http:// or https://, got {url!r}")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"URL has an invalid port: {url!r}") from None
    if not host:
        raise ValueError(f"URL has no host: {url!r}")
    if parts.username or parts.password:
        raise ValueError("URL must not contain credentials; send them in a custom header")
    check_numeric_host(host)
    return url


def check_numeric_host(host: str) -> None:
    """Refuse IPv4 addresses in a form other than four decimal numbers (``2130706433``, ``0x7f.1``,
    ``127.1``): clients and resolvers disagree on what they mean. As in the WHATWG URL standard, a host
    whose last label is a number is an IPv4 address."""
    if ":" in host:  # an IPv6 literal
        return
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if not (last.isascii() and (last.isdigit() or last.lower().startswith("0x"))):
        return
    parts = host.split(".")
    canonical = len(parts) == 4 and all(
        part.isascii() and part.isdigit() and str(int(part)) == part and int(part) <= 255 for part in parts
    )
    if not canonical:
        raise ValueError(
            f"host {host!r} is not a valid address: write an IPv4 address as four numbers, e.g. 192.0.2.10"
        )


class WebhookSpec(BaseModel):
    """What an operator defines: name, URL, events (``None`` = all), secret, custom headers, active."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    events: tuple[EventName, ...] | None = None
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}
    active: bool = True
    signature: SignatureScheme = "seed"
    rate_limit: str | None = None  # "20/s" or "50/m", for the whole consumer group
    filter: str | None = None  # a JMESPath expression over the event; deliveries only where it is true

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = check_printable(value, "name").strip()
        if not value:
            raise ValueError("name must not be empty")
        if len(value) > MAX_NAME:
            raise ValueError(f"name is longer than {MAX_NAME} characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str | list | tuple):
            raise ValueError("events must be a list of event names")
        names = [value] if isinstance(value, str) else list(value)
        if not names:
            raise ValueError("choose at least one event, or all events")
        return parse_event_names(str(name) for name in names)

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is not None and not str(raw):
            raise ValueError("secret must not be empty (leave it out for no signature)")
        if raw is not None:
            check_printable(str(raw), "secret")
            if len(str(raw).encode()) > MAX_SECRET_BYTES:
                raise ValueError(f"secret is longer than {MAX_SECRET_BYTES} bytes")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        if len(value) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} custom headers")
        for name, header_value in value.items():
            raw = header_value.get_secret_value() if isinstance(header_value, SecretStr) else header_value
            check_header(str(name), str(raw))
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        count, per = parse_rate_limit(value)
        return f"{count}/{'s' if per == 1 else 'm'}"

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_filter(value)
        return value.strip()

    @cached_property
    def rate_per_second(self) -> float | None:
        """The rate limit in deliveries per second (``None``: no limit); worked out once per object."""
        if self.rate_limit is None:
            return None
        count, per = parse_rate_limit(self.rate_limit)
        return count / per

    @model_validator(mode="after")
    def _secret_fits_scheme(self) -> WebhookSpec:
        given = None if self.secret is None else self.secret.get_secret_value()
        if self.signature == "standard":
            if given is None:
                raise ValueError("the standard signature needs a secret (whsec_…)")
            check_standard_secret(given)
        elif self.signature == "standard-ed25519":
            if given is None:
                raise ValueError(
                    "the standard-ed25519 signature needs a private key (whsk_…, or --generate-key)"
                )
            if given.startswith(PUBLIC_KEY_PREFIX):
                raise ValueError("a whpk_ key is the public key: the webhook needs the private key (whsk_…)")
            ed25519_seed(given)
        # A seed secret may be any text, whsk_… included (other services' secrets use that prefix too).
        return self

    @property
    def public_key(self) -> str | None:
        """The ``whpk_`` public key receivers verify with (standard-ed25519 only; not a secret)."""
        if self.signature != "standard-ed25519" or self.secret is None:
            return None
        return ed25519_public_key(self.secret.get_secret_value())

    def subscribes_to(self, event: str) -> bool:
        """True when this webhook is active and asked for ``event``."""
        return self.active and (self.events is None or event in self.events)

    def with_changes(self, **changes: Any) -> WebhookSpec:
        """A copy with ``changes`` applied and validated as a whole."""
        return validate_webhook(**{**self.plain(), **changes})

    def plain(self) -> dict[str, Any]:
        """The fields with secrets revealed, for re-validation and storage only, never for display."""
        return {
            "name": self.name,
            "url": self.url,
            "events": None if self.events is None else [event.value for event in self.events],
            "secret": None if self.secret is None else self.secret.get_secret_value(),
            "headers": {name: value.get_secret_value() for name, value in self.headers.items()},
            "active": self.active,
            "signature": self.signature,
            "rate_limit": self.rate_limit,
            "filter": self.filter,
        }


class Webhook(WebhookSpec):
    """A stored webhook subscription."""

    id: int
    created_at: datetime
    updated_at: datetime
    previous_secret: SecretStr | None = None  # still signs, beside the new one, until the time below
    previous_secret_until: datetime | None = None
    disabled_reason: str | None = None  # set when it was switched off automatically
    failing_since: datetime | None = None

    def signing_secrets(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign at ``now``: the current one, then the previous one during a rotation."""
        if self.secret is None:
            return ()
        current = self.secret.get_secret_value()
        previous, until = self.previous_secret, self.previous_secret_until
        if previous is not None and until is not None and now < until:
            return (current, previous.get_secret_value())
        return (current,)

    @property
    def previous_public_key(self) -> str | None:
        """The public key of the previous private key, while a rotation keeps it signing too."""
        previous = None if self.previous_secret is None else self.previous_secret.get_secret_value()
        if self.signature != "standard-ed25519" or previous is None or self.previous_secret_until is None:
            return None
        try:
            return ed25519_public_key(previous)
        except ValueError:  # not a key (a seed secret kept from before the scheme changed): none to show
            return None

    def masked(self) -> dict[str, Any]:
        """The webhook for display: secret and custom header values replaced by ``****``; the public keys
        of a standard-ed25519 webhook are shown, as receivers need them and they are not secrets."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "events": "all" if self.events is None else [event.value for event in self.events],
            "secret": None if self.secret is None else MASK,
            "headers": dict.fromkeys(self.headers, MASK),
            "active": self.active,
            "signature": self.signature,
            "public_key": self.public_key,
            "previous_public_key": self.previous_public_key,
            "rate_limit": self.rate_limit,
            "filter": self.filter,
            "previous_secret_until": _iso(self.previous_secret_until),
            "disabled_reason": self.disabled_reason,
            "failing_since": _iso(self.failing_since),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def validate_webhook(**fields: Any) -> WebhookSpec:
    """Validate a webhook definition; raise ``InvalidWebhookError`` with one line on the first problem."""
    try:
        return WebhookSpec(**fields)
    except ValidationError as exc:
        raise InvalidWebhookError(first_problem(exc)) from None


def first_problem(error: ValidationError) -> str:
    """One line for the first problem of a validation error, without pydantic's decoration."""
    first = error.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown field {field!r}"
    return message if field in message or not field else f"{field}: {message}"
