"""Webhook subscriptions: the seed's "New Webhook" form (§2) as a validated contract."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from assethooks.errors import InvalidWebhookError
from schemas.events import EventName

MASK: Final = "****"
MAX_NAME = 200
MAX_URL = 2048

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
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


SignatureScheme = Literal["seed", "standard"]
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


def is_delivery_header(name: str) -> bool:
    """True when ``name`` is a header that deliveries set and custom headers may not override."""
    lowered = name.lower()
    return lowered in DELIVERY_HEADERS or lowered.startswith(DELIVERY_HEADER_PREFIX)


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


def check_printable(value: str, what: str) -> str:
    """Refuse control characters (NUL, escapes, line breaks): no store, header or log line takes them."""
    if any(unicodedata.category(char) == "Cc" and char != "\t" for char in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def check_url(url: str) -> str:
    """Check that ``url`` is an absolute http(s) URL with a host; return it stripped."""
    url = url.strip()
    if not url:
        raise ValueError("URL must not be empty")
    check_printable(url, "URL")
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
    return url


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
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        for name, header_value in value.items():
            raw = header_value.get_secret_value() if isinstance(header_value, SecretStr) else header_value
            if not _TOKEN.match(str(name)):
                raise ValueError(f"invalid header name {name!r}")
            if is_delivery_header(str(name)):
                raise ValueError(f"custom header {name!r} would override a delivery header")
            if "\r" in str(raw) or "\n" in str(raw):
                raise ValueError(f"header {name!r} value must be one line")
            check_printable(str(raw), f"header {name!r} value")
        return value

    @model_validator(mode="after")
    def _secret_fits_scheme(self) -> WebhookSpec:
        if self.signature == "standard":
            if self.secret is None:
                raise ValueError("the standard signature needs a secret (whsec_…)")
            check_standard_secret(self.secret.get_secret_value())
        return self

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

    def masked(self) -> dict[str, Any]:
        """The webhook for display: secret and custom header values replaced by ``****``."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "events": "all" if self.events is None else [event.value for event in self.events],
            "secret": None if self.secret is None else MASK,
            "headers": dict.fromkeys(self.headers, MASK),
            "active": self.active,
            "signature": self.signature,
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
