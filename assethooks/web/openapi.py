"""The OpenAPI 3.0 description of the admin API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from assethooks import __version__
from schemas.events import EventName

_ID = {"type": "integer", "minimum": 0, "format": "int64"}
_TEXT = {"type": "string"}
_ERROR = {
    "description": "a one-line error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


_TOO_MANY = {
    "description": "too many wrong bearer tokens from this address: wait, then try again",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _operation(
    summary: str,
    answer: str,
    *,
    body: str | None = None,
    query: list[dict[str, Any]] | None = None,
    path_id: bool = False,
    created: bool = False,
    unavailable: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "201" if created else "200": _ok(answer),
            "400": _ERROR,
            "401": _ERROR,
            "404": _ERROR,
            "429": _TOO_MANY,
        },
    }
    if unavailable:
        operation["responses"]["503"] = {**_ERROR, "description": "Kafka or the database cannot be reached"}
    parameters = list(query or [])
    if path_id:
        parameters.append({"name": "id", "in": "path", "required": True, "schema": _ID})
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = _json_body(body)
    return operation


_LOG_FILTERS = [
    _query("webhook_id", _ID, "only this webhook"),
    _query("event", _TEXT, "only this event"),
    _query("asset", _TEXT, "only this asset id"),
    _query("status", {"type": "string", "enum": ["ok", "failed"]}, "successful or failed attempts"),
    _query("since", _TEXT, "ISO 8601 or a duration ago (2h, 7d)"),
    _query("until", _TEXT, "ISO 8601 or a duration ago"),
]
_DLQ_FILTERS = [
    _query("webhook_id", _ID, "only deliveries to this webhook"),
    _query("event", _TEXT, "only this event"),
    _query(
        "kind",
        {"type": "string", "enum": ["invalid-event", "attempts-exhausted", "undeliverable", "unknown"]},
        "why it died",
    ),
    _query("reason", _TEXT, "reason contains this text"),
    _query("since", _TEXT, "dead since: ISO 8601 or a duration ago"),
    _query("until", _TEXT, "dead before: ISO 8601 or a duration ago"),
]
_EVENTS = {
    "oneOf": [
        {"type": "string", "enum": ["all"]},
        {
            "type": "array",
            "items": {"type": "string", "enum": [event.value for event in EventName]},
            "minItems": 1,
        },
    ]
}
_WEBHOOK_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "url": {"type": "string", "description": "endpoint that accepts POST (https advised)"},
    "events": _EVENTS,
    "secret": {"type": "string", "nullable": True, "writeOnly": True},
    "generate_secret": {"type": "boolean", "description": "make a strong secret; the answer shows it once"},
    "generate_key": {
        "type": "boolean",
        "description": "standard-ed25519: make a key pair; the webhook's public_key shows its public key",
    },
    "signature": {"type": "string", "enum": ["seed", "standard", "standard-ed25519"]},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "active": {"type": "boolean"},
    "rate_limit": {
        "type": "string",
        "nullable": True,
        "description": 'at most this many deliveries, e.g. "20/s" or "50/m"; null or "" removes it',
    },
    "filter": {
        "type": "string",
        "nullable": True,
        "maxLength": 1000,
        "description": "a JMESPath expression over the event JSON: only events it is true for are delivered; "
        'null or "" removes it',
    },
}
_SELECTION = {
    "type": "object",
    "properties": {
        "ids": {"type": "array", "items": _ID},
        "all": {"type": "boolean"},
        **{parameter["name"]: parameter["schema"] for parameter in _DLQ_FILTERS},
    },
    "additionalProperties": False,
}


def openapi_document() -> dict[str, Any]:
    """The API description."""
    webhook = "/api/webhooks/{id}"
    return {
        "openapi": "3.0.3",
        "info": {"title": "asset-webhooks admin API", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": _TEXT}, "required": ["error"]},
                "NewWebhook": {
                    "type": "object",
                    "properties": _WEBHOOK_FIELDS,
                    "required": ["name", "url", "events"],
                    "additionalProperties": False,
                },
                "WebhookChanges": {
                    "type": "object",
                    "properties": _WEBHOOK_FIELDS,
                    "additionalProperties": False,
                },
                "LogRetry": {
                    "type": "object",
                    "properties": {
                        "ids": {"type": "array", "items": _ID},
                        **{parameter["name"]: parameter["schema"] for parameter in _LOG_FILTERS},
                    },
                    "additionalProperties": False,
                },
                "DeadLetterSelection": _SELECTION,
                "SecretRotation": {
                    "type": "object",
                    "properties": {
                        "secret": {"type": "string", "writeOnly": True},
                        "generate_secret": {"type": "boolean", "description": "the answer shows it once"},
                        "generate_key": {
                            "type": "boolean",
                            "description": "a new key pair (standard-ed25519)",
                        },
                        "grace": {"type": "string", "description": "how long the old secret signs too (24h)"},
                    },
                    "additionalProperties": False,
                },
                "LogPurge": {
                    "type": "object",
                    "properties": {
                        "older_than": {"type": "string", "description": "a duration (default: the retention)"}
                    },
                    "additionalProperties": False,
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/events": {"get": _operation("The events, grouped as on the Webhooks screen", "groups")},
            "/api/webhooks": {
                "get": _operation("List webhooks (secrets masked)", "webhooks"),
                "post": _operation(
                    "Create a webhook", "the webhook and warnings", body="NewWebhook", created=True
                ),
            },
            webhook: {
                "get": _operation("Show a webhook", "the webhook", path_id=True),
                "patch": _operation(
                    "Change a webhook", "the webhook and warnings", body="WebhookChanges", path_id=True
                ),
                "delete": _operation("Delete a webhook (its log stays)", "the deleted webhook", path_id=True),
            },
            webhook + "/enable": {"post": _operation("Switch a webhook on", "the webhook", path_id=True)},
            webhook + "/disable": {"post": _operation("Switch a webhook off", "the webhook", path_id=True)},
            webhook + "/test": {
                "post": _operation(
                    "Send the test payload (webhook.test)", "what the endpoint answered", path_id=True
                )
            },
            webhook + "/health": {
                "get": _operation(
                    "A webhook's health: attempts over the last hour and day, the last attempt, failing "
                    "since, the circuit, retries waiting, pending dead letters, attempts per hour",
                    "the health",
                    path_id=True,
                )
            },
            webhook + "/rotate-secret": {
                "post": _operation(
                    "Replace the secret; the old one signs beside it for the grace period",
                    "the webhook (and a generated secret, once)",
                    body="SecretRotation",
                    path_id=True,
                )
            },
            "/api/health": {"get": _operation("Every webhook's health (no hourly counts)", "the health")},
            "/api/logs": {
                "get": _operation(
                    "Delivery attempts, newest first",
                    "attempts",
                    query=[
                        *_LOG_FILTERS,
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
                        _query("cursor", _TEXT, "the next_cursor of the previous page"),
                    ],
                )
            },
            "/api/logs/{id}": {"get": _operation("One attempt in full", "the attempt", path_id=True)},
            "/api/logs/purge": {
                "post": _operation("Delete attempts older than a duration", "how many", body="LogPurge")
            },
            "/api/logs/retry": {
                "post": _operation(
                    "Re-send failed deliveries (ids or filters)", "queued and skipped", body="LogRetry"
                )
            },
            "/api/dlq": {
                "get": _operation(
                    "Dead letters, oldest first",
                    "entries",
                    query=[
                        *_DLQ_FILTERS,
                        _query(
                            "status",
                            {"type": "string", "enum": ["pending", "replayed", "purged", "resolved", "all"]},
                            "default pending",
                        ),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
                    ],
                )
            },
            "/api/dlq/{id}": {
                "get": _operation("One dead letter: reason, attempts, payload", "the entry", path_id=True)
            },
            "/api/dlq/replay": {
                "post": _operation(
                    "Send dead letters back through the pipeline",
                    "replayed and missing",
                    body="DeadLetterSelection",
                )
            },
            "/api/dlq/purge": {
                "post": _operation(
                    "Mark dead letters resolved without sending", "purged", body="DeadLetterSelection"
                )
            },
            "/api/status": {
                "get": _operation(
                    "Consumer groups and their lag, retry backlog, pending dead letters, last alerts run",
                    "groups, retry_backlog, dead_letters and last_alerts_run (as `assethooks status --json`)",
                    unavailable=True,
                )
            },
        },
    }
