"""The one exception tree of asset-webhooks.

::

    AssetHooksError                      root: every error this project raises on purpose
    ├── ConfigError                      a setting is missing or malformed
    ├── InvalidInputError                user or upstream input fails validation (one-line message)
    │   ├── InvalidEventError            a record is not a valid asset event (goes to the DLQ)
    │   └── InvalidWebhookError          a webhook definition is rejected (nothing is saved)
    ├── NotFoundError                    a webhook, log entry or DLQ entry does not exist
    ├── KafkaUnavailableError            the broker cannot be reached or refused an operation
    ├── RecordTooLargeError              a record is over the size Kafka accepts
    ├── StoreUnavailableError            the SQL store cannot be reached
    └── DeliveryFailedError              one delivery attempt did not get a 2xx
        ├── RetryableDeliveryError       worth another attempt: the schedule decides when
        │   ├── HttpStatusError          the endpoint answered with a non-2xx status
        │   ├── DeliveryTimeoutError     no complete answer within the delivery timeout
        │   └── TransportError           connection refused/reset, DNS failure, TLS failure
        └── PermanentDeliveryError       another attempt cannot succeed: straight to the DLQ
            ├── BlockedDestinationError  the URL resolves to an address deliveries may not reach
            └── EndpointGoneError        the endpoint answered 410 Gone: the webhook is disabled

Whether a failed attempt is retried is decided by its class, never by matching message text. What an error
means to a caller is decided by its class too: ``ERROR_CODES`` gives each its exit code in the CLI and its
HTTP status in the admin API, one table for both.
"""

from __future__ import annotations

from typing import NamedTuple


class AssetHooksError(Exception):
    """Root of every error raised on purpose by asset-webhooks."""


class ConfigError(AssetHooksError):
    """A setting is missing or malformed."""


class InvalidInputError(AssetHooksError):
    """Input from a user or an upstream system fails validation."""


class InvalidEventError(InvalidInputError):
    """A record is not a valid asset event; ``reason`` says why in one line."""


class InvalidWebhookError(InvalidInputError):
    """A webhook definition is rejected; nothing is saved."""


class NotFoundError(AssetHooksError):
    """The named webhook, log entry or dead-letter entry does not exist."""


class KafkaUnavailableError(AssetHooksError):
    """The Kafka broker cannot be reached, or refused an operation."""


class RecordTooLargeError(AssetHooksError):
    """A record is larger than the producer or the broker accepts."""


class StoreUnavailableError(AssetHooksError):
    """The SQL store cannot be reached or used."""


class DeliveryFailedError(AssetHooksError):
    """One delivery attempt did not end with a 2xx answer.

    ``status_code`` is the HTTP status when the endpoint answered, ``response_body`` the first bytes of its
    answer (decoded leniently), ``location`` the ``Location`` header of a redirect and ``retry_after`` the
    seconds a 429 or 503 answer asked to wait.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response_body: str | None = None,
        location: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response_body = response_body
        self.location = location
        self.retry_after = retry_after

    @property
    def trips_breaker(self) -> bool:
        """True when the failure says the endpoint is unwell (5xx, 429, timeout, no connection), as
        opposed to a request it refused (other 4xx)."""
        code = self.status_code
        return code is None or code >= 500 or code in {408, 429}


class RetryableDeliveryError(DeliveryFailedError):
    """A failed attempt that a later attempt may turn into a success."""

    retryable = True


class HttpStatusError(RetryableDeliveryError):
    """The endpoint answered with a status outside 2xx."""


class DeliveryTimeoutError(RetryableDeliveryError):
    """The endpoint did not answer completely within the delivery timeout."""


class TransportError(RetryableDeliveryError):
    """The request could not be sent or its answer read: refused, reset, DNS or TLS failure."""


class PermanentDeliveryError(DeliveryFailedError):
    """A failed attempt that no later attempt can fix without an operator."""


class BlockedDestinationError(PermanentDeliveryError):
    """The webhook URL resolves to an address that deliveries may not reach."""


class EndpointGoneError(PermanentDeliveryError):
    """The endpoint answered 410 Gone: it asks for no more deliveries, so the webhook is disabled."""


class Codes(NamedTuple):
    """What an error means outside the process: the CLI's exit code and the admin API's HTTP status."""

    exit_code: int
    http_status: int


# Most specific first. ConfigError reaches the API as a setting-style value in a request (a malformed time).
ERROR_CODES: tuple[tuple[type[AssetHooksError], Codes], ...] = (
    (ConfigError, Codes(2, 400)),
    (InvalidInputError, Codes(2, 400)),
    (NotFoundError, Codes(3, 404)),
    (KafkaUnavailableError, Codes(4, 503)),
    (StoreUnavailableError, Codes(4, 503)),
    (DeliveryFailedError, Codes(5, 502)),  # the endpoint, upstream of us, did not accept the delivery
)
UNEXPECTED = Codes(1, 500)  # any other error: a bug, or a failure nobody planned for


def codes_for(error: AssetHooksError) -> Codes:
    """The exit code and HTTP status of ``error``, by its class."""
    return next((codes for kind, codes in ERROR_CODES if isinstance(error, kind)), UNEXPECTED)
