"""The one settings object: typed, frozen, read from ``ASSETHOOKS_*`` environment variables.

Secrets (the database URL for its password, the SASL password, the TLS key's password, the encryption
keys, the admin token) are ``SecretStr`` so they never show in ``repr``; ``describe()`` renders every
setting for ``assethooks config`` with secrets masked. Durations are read as ``30s``, ``5m``, ``2h``, ``7d``
or seconds; the retry tiers (their delays and topic names) are derived from ``retry_schedule``.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from assethooks.durations import format_duration, parse_duration
from assethooks.errors import ConfigError
from assethooks.routing import Tiers

ENV_PREFIX = "ASSETHOOKS_"


def _as_value_error(parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ConfigError as exc:  # pydantic reports ValueError with the variable's name
        raise ValueError(str(exc)) from None


def _seconds(value: Any) -> Any:
    return _as_value_error(parse_duration, value) if isinstance(value, str) else value


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _duration_list(value: Any) -> Any:
    return tuple(_as_value_error(parse_duration, part) for part in _split(value))


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
DurationList = Annotated[tuple[float, ...], NoDecode, BeforeValidator(_duration_list)]
CidrList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split)]


MIN_ADMIN_TOKEN = 16


class Settings(BaseSettings):
    """Every setting of asset-webhooks; ``ASSETHOOKS_<NAME>`` overrides each one."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap: str = "localhost:9092"
    # Kafka connection security (librdkafka names in brackets): PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None  # CA bundle (PEM) to verify the brokers
    kafka_ssl_certificate_location: str | None = None  # client certificate (PEM), for mutual TLS
    kafka_ssl_key_location: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    database_url: SecretStr = SecretStr("sqlite:///assethooks.db")

    source_topic: str = "asset-events"
    retry_topic_prefix: str = "asset-webhooks.retry"
    dlq_topic: str = "asset-webhooks.dlq"
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    topic_retention: PositiveSeconds = 7 * 86400
    dlq_retention: PositiveSeconds = 30 * 86400

    dispatcher_group: str = "assethooks-dispatcher"
    retrier_group: str = "assethooks-retrier"
    # How soon a crashed group member's partitions move to the others (Kafka's default is 45 s).
    session_timeout: PositiveSeconds = 10

    # Delays before attempts 2, 3, ...: attempt 1 is immediate, so 8 attempts in all by default.
    retry_schedule: DurationList = (5, 300, 1800, 7200, 18000, 36000, 36000)
    retry_jitter: float = Field(0.2, ge=0, lt=1)
    delivery_timeout: PositiveSeconds = 30
    max_in_flight: int = Field(1000, ge=1)
    max_in_flight_per_webhook: int = Field(64, ge=1)
    # Concurrent HTTP requests per process, all webhooks together: enough to keep a core busy, few enough
    # that an attempt's time is the endpoint's and not a queue inside this process.
    max_requests: int = Field(256, ge=1)
    # How long a delivery may wait for its busy webhook before it moves to a retry tier (unattempted).
    spill_after: PositiveSeconds = 1
    # How long a delivery of a rate-limited webhook may wait for its turn before it moves to a retry tier.
    rate_limit_wait: PositiveSeconds = 1
    # Endpoint etiquette: a Retry-After is honoured up to this long; a circuit opens after this many
    # failures in a row (0: never) for the cooldown, doubling up to the maximum; a webhook failing without
    # a success for this long is disabled (its pending deliveries go to the dead-letter topic).
    retry_after_max: PositiveSeconds = 3600
    breaker_failures: int = Field(10, ge=0)
    breaker_cooldown: PositiveSeconds = 30
    breaker_max_cooldown: PositiveSeconds = 600
    auto_disable_after: PositiveSeconds = 5 * 86400
    webhook_refresh_interval: PositiveSeconds = 2
    shutdown_timeout: Seconds = 25
    # Address ranges deliveries may reach although they are private or loopback (local demos, tests).
    allowed_cidrs: CidrList = ()
    # CA bundle (PEM) trusted for HTTPS webhook URLs besides the system's, for private CAs.
    ca_bundle: str | None = None
    # Fernet keys (comma-separated, newest first) encrypting webhook secrets and custom header values at
    # rest; without one they are stored as given. Make one with `assethooks secrets new-key`.
    encryption_keys: SecretStr | None = None
    # Bearer token of `assethooks serve` (the admin page and API); without one it binds to loopback only.
    # An empty value counts as none (compose passes one when the variable is unset); a set one is long.
    admin_token: SecretStr | None = None
    # After five wrong admin tokens in a row from one address, its next attempt waits this long, doubling
    # with each further wrong token up to the maximum; a right token clears it.
    admin_login_delay: PositiveSeconds = 1
    admin_login_max_delay: PositiveSeconds = 300

    log_retention: PositiveSeconds = 30 * 86400

    # The alerts cron producer and the asset-state projection it reads.
    projector_group: str = "assethooks-projector"
    warranty_window: PositiveSeconds = 30 * 86400
    maintenance_window: PositiveSeconds = 7 * 86400
    alert_claim_lease: PositiveSeconds = 600  # a claimed alert not sent within this is claimed again
    # Where the projection finds its facts: looked up in an event's `data`, then in its `asset`.
    field_warranty_end: str = "warranty_end_date"
    field_maintenance_date: str = "maintenance_date"
    field_checkout_due: str = "due_date"
    field_checkout_id: str = "checkout_id"
    field_quantity: str = "quantity"
    field_min_quantity: str = "min_quantity"
    log_level: str = "INFO"

    @field_validator("allowed_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator(
        "ca_bundle", "kafka_ssl_ca_location", "kafka_ssl_certificate_location", "kafka_ssl_key_location"
    )
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _complete_kafka_security(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL"):
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.kafka_security_protocol} needs {', '.join(missing)}")
        return self

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < MIN_ADMIN_TOKEN:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN} characters (e.g. openssl rand -hex 24)")
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a database URL (e.g. sqlite:///assethooks.db, postgresql://…)") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")
        return value

    @cached_property
    def retry_topics(self) -> tuple[str, ...]:
        """The retry-tier topics, one per distinct delay, shortest delay first."""
        return tuple(self._tier_topics.values())

    @cached_property
    def tiers(self) -> Tiers:
        """The retry tiers and their jitter (``assethooks.routing``)."""
        return Tiers.of(self.retry_schedule, self.retry_jitter)

    def retry_topic_for(self, delay: float) -> str:
        """The topic of the retry tier that holds tasks for ``delay`` seconds."""
        found = self._tier_topics.get(delay)
        return found if found is not None else f"{self.retry_topic_prefix}.{format_duration(delay)}"

    def tier_of(self, topic: str) -> float | None:
        """The delay of the retry tier ``topic`` is the topic of (``None``: not a tier's)."""
        return self._topic_tiers.get(topic)

    @cached_property
    def _tier_topics(self) -> dict[float, str]:
        return {tier: f"{self.retry_topic_prefix}.{format_duration(tier)}" for tier in self.tiers.delays}

    @cached_property
    def _topic_tiers(self) -> dict[str, float]:
        return {topic: tier for tier, topic in self._tier_topics.items()}

    def describe(self) -> dict[str, str]:
        """Every setting as text, for display: secrets masked, durations in their short form."""
        shown: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "database_url":
                shown[name] = make_url(value.get_secret_value()).render_as_string(hide_password=True)
            elif isinstance(value, SecretStr):
                shown[name] = "****" if value.get_secret_value() else ""
            elif value is None:
                shown[name] = ""
            elif _is_duration(field.metadata):
                durations = value if isinstance(value, tuple) else (value,)
                shown[name] = ",".join(format_duration(delay) for delay in durations)
            elif isinstance(value, tuple):
                shown[name] = ",".join(str(item) for item in value)
            else:
                shown[name] = str(value)
        return shown


def _is_duration(metadata: list[Any]) -> bool:
    """True for the settings read as durations (``Seconds``, ``PositiveSeconds``, ``DurationList``)."""
    return any(
        isinstance(item, BeforeValidator) and item.func in (_seconds, _duration_list) for item in metadata
    )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; raise ``ConfigError`` naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule about several settings names them itself
            raise ConfigError(message) from None
        name = ENV_PREFIX + str(error["loc"][0]).upper()
        raise ConfigError(f"{name}: {message}") from None
