"""``assethooks webhooks …``: the seed's Webhooks screen (create, list, show, update, delete, enable,
disable). Secrets and custom header values are masked in every output; an Ed25519 webhook's public key is
shown (it is not a secret), its private key never."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from assethooks.cli.base import WEBHOOK_ID, App, Group, pass_app, with_options
from assethooks.cli.output import echo_fields, echo_json, echo_table, printable, say, short
from assethooks.clock import utc_now
from assethooks.durations import format_duration, parse_duration
from assethooks.errors import DeliveryFailedError, InvalidWebhookError
from assethooks.operator.deliveries import send_test_delivery
from assethooks.operator.health import health, health_json, summary
from assethooks.operator.webhooks import (
    Saved,
    check_generated,
    create_webhook,
    generate_secret,
    parse_header_lines,
    update_webhook,
)
from assethooks.store.health import Health
from schemas.webhooks import Webhook


def _events_choice(events: tuple[str, ...], all_events: bool, *, required: bool) -> dict[str, Any]:
    if events and all_events:
        raise InvalidWebhookError("use either --event or --all-events, not both")
    if all_events:
        return {"events": None}
    if events:
        return {"events": list(events)}
    if required:
        raise InvalidWebhookError("choose events with --event NAME (repeatable) or --all-events")
    return {}


def _summary(webhook: Webhook) -> dict[str, Any]:
    masked = webhook.masked()
    return {
        "id": masked["id"],
        "name": masked["name"],
        "url": masked["url"],
        "events": "all" if webhook.events is None else len(webhook.events),
        "secret": "set" if webhook.secret else "-",
        "active": webhook.active,
        "rate": webhook.rate_limit,
        "filter": short(webhook.filter, 40),
        "why": short(webhook.disabled_reason, 60),
    }


def _with_health(masked: dict[str, Any], found: Health | None) -> dict[str, Any]:
    return {**masked, "health": None if found is None else health_json(found)}


def _echo_health(picture: dict[str, Any]) -> None:
    def rate(window: dict[str, Any]) -> str:
        if not window["attempts"]:
            return "no attempts"
        return (
            f"{window['attempts']:,} attempts, {window['success_rate']:.1%} succeeded, "
            f"mean {window['mean_ms']} ms"
        )

    last = picture["last_attempt"]
    echo_fields(
        {
            "health": picture["summary"],
            "last hour": rate(picture["last_hour"]),
            "last 24 hours": rate(picture["last_day"]),
            "last attempt": "-"
            if last is None
            else f"{last['at']} {'ok' if last['success'] else 'failed'} "
            f"{last['status_code'] or '-'} {last['duration_ms']} ms",
            "failing since": picture["failing_since"] or "-",
            "circuit": picture["circuit"]
            + (f" until {picture['circuit_open_until']}" if picture["circuit"] == "open" else ""),
            "retrying": picture["retrying"],
            "dead letters": picture["dead_letters"],
        }
    )
    click.echo("attempts per hour, oldest first (+ succeeded, x failed; 16 marks = the busiest hour):")
    busiest = max((hour["succeeded"] + hour["failed"] for hour in picture["hours"]), default=0) or 1
    for hour in picture["hours"]:
        bar = "+" * round(16 * hour["succeeded"] / busiest) + "x" * round(16 * hour["failed"] / busiest)
        counts = f"{hour['succeeded']:>7,} {hour['failed']:>7,}"
        click.echo(f"  {hour['start'][:13]}h  {bar:<17}{counts}")


def _warn(saved: Saved) -> None:
    for warning in saved.warnings:
        say(f"Warning: {warning}", err=True)


F = TypeVar("F", bound=Callable[..., Any])

secret_options: list[Callable[[F], F]] = [
    click.option(
        "--secret",
        help="Secret key for the HMAC-SHA256 signature, or whsk_ private key for standard-ed25519 "
        "('-' reads it from stdin).",
    ),
    click.option("--generate-secret", is_flag=True, help="Generate a strong secret and print it once."),
    click.option(
        "--generate-key",
        is_flag=True,
        help="standard-ed25519: generate a key pair, print its public key (never the private key).",
    ),
]
control_options: list[Callable[[F], F]] = [
    click.option(
        "--filter",
        "filter_",
        metavar="EXPR",
        help="Deliver only events this JMESPath expression is true for, e.g. "
        "\"data.location == 'Lisbon'\" ('' removes it).",
    ),
    click.option(
        "--rate-limit", metavar="RATE", help="At most this many deliveries: 20/s, 50/m ('' removes it)."
    ),
]
SCHEMES = ["seed", "standard", "standard-ed25519"]
GENERATE_FLAGS = ("--generate-secret", "--generate-key")
event_options: list[Callable[[F], F]] = [
    click.option(
        "--event", "events", multiple=True, metavar="EVENT", help="Event to subscribe to (repeatable)."
    ),
    click.option("--all-events", is_flag=True, help="Subscribe to every event."),
]


@click.group("webhooks", cls=Group)
def webhooks() -> None:
    """Manage webhook subscriptions."""


@webhooks.command("create")
@click.option("--name", required=True, help='Webhook name, e.g. "Sync to ERP".')
@click.option("--url", required=True, help="Endpoint that accepts POST requests.")
@with_options(event_options)
@with_options(secret_options)
@click.option(
    "--signature",
    type=click.Choice(SCHEMES),
    default="seed",
    show_default=True,
    help="seed: X-Asset-Webhook-Signature; standard: Standard Webhooks v1 (whsec_ secrets); "
    "standard-ed25519: Standard Webhooks v1a (whsk_ private key, whpk_ public key).",
)
@click.option(
    "--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="Custom header (repeatable)."
)
@click.option("--inactive", is_flag=True, help="Create it switched off.")
@with_options(control_options)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def create(
    app: App,
    name: str,
    url: str,
    events: tuple[str, ...],
    all_events: bool,
    secret: str | None,
    generate_secret: bool,
    generate_key: bool,
    signature: str,
    headers: tuple[str, ...],
    inactive: bool,
    filter_: str | None,
    rate_limit: str | None,
    as_json: bool,
) -> None:
    """Create a webhook."""
    check_generated(signature, secret=generate_secret, key=generate_key, names=GENERATE_FLAGS)
    chosen = _secret(secret, generate_secret or generate_key, signature)
    saved = create_webhook(
        app.settings,
        app.webhooks,
        {
            "name": name,
            "url": url,
            "secret": chosen,
            "signature": signature,
            "headers": parse_header_lines(headers),
            "active": not inactive,
            "filter": filter_,
            "rate_limit": rate_limit,
            **_events_choice(events, all_events, required=True),
        },
    )
    _warn(saved)
    webhook = saved.webhook
    if as_json:
        echo_json(webhook.masked())
    else:
        say(f"Created webhook {webhook.id} ({webhook.name}) -> {webhook.url}")
    if generate_secret:
        _show_generated(chosen)
    if webhook.public_key is not None and not as_json:
        _show_public_key(webhook.public_key)


def _secret(given: str | None, generate: bool, scheme: str) -> str | None:
    """The secret chosen on the command line: given, read from stdin (``-``), or generated."""
    if given is not None and generate:
        raise InvalidWebhookError("use either --secret or --generate-secret/--generate-key, not both")
    if generate:
        return generate_secret(scheme)
    if given == "-":
        line = sys.stdin.buffer.readline()
        try:
            return line.decode().strip()
        except UnicodeDecodeError:
            raise InvalidWebhookError("the secret read from stdin is not UTF-8 text") from None
    return given


def _show_generated(secret: str | None) -> None:
    # The one place a secret is printed: the operator asked for a new one and must hand it on.
    click.echo(f"Secret (shown once, give it to the receiver): {secret}")


def _show_public_key(public_key: str) -> None:
    click.echo(f"Public key (give it to the receiver; `webhooks show` shows it again): {public_key}")


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List every webhook with its health: ok, failing since …, circuit open …, disabled: why."""
    found = app.webhooks.list()
    healths = {found.webhook_id: found for found in health(app.migrated_engine)}
    if as_json:
        echo_json([_with_health(webhook.masked(), healths.get(webhook.id)) for webhook in found])
        return
    rows = []
    for webhook in found:
        row = _summary(webhook)
        row["health"] = short(summary(healths[webhook.id]), 70) if webhook.id in healths else "-"
        rows.append(row)
    echo_table(rows, ["id", "name", "url", "events", "secret", "active", "rate", "filter", "health"])


@webhooks.command("show")
@click.argument("webhook_id", type=WEBHOOK_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, webhook_id: int, as_json: bool) -> None:
    """Show one webhook and its health: attempts over the last hour and day, the last attempt, failing
    since, the circuit, deliveries waiting for a retry, pending dead letters, attempts per hour."""
    webhook = app.webhooks.get(webhook_id)
    found = health(app.migrated_engine, [webhook_id], hours=True)
    if as_json:
        echo_json(_with_health(webhook.masked(), found[0] if found else None))
        return
    picture = health_json(found[0]) if found else None
    echo_fields(webhook.masked())
    if picture is not None:
        click.echo("")
        _echo_health(picture)


@webhooks.command("update")
@click.argument("webhook_id", type=WEBHOOK_ID)
@click.option("--name", help="New name.")
@click.option("--url", help="New endpoint URL.")
@with_options(event_options)
@click.option("--secret", help="New secret key ('-' reads it from stdin); see also rotate-secret.")
@click.option("--no-secret", is_flag=True, help="Remove the secret (deliveries go unsigned).")
@click.option("--signature", type=click.Choice(SCHEMES), help="Signature scheme.")
@click.option(
    "--generate-key", is_flag=True, help="standard-ed25519: a new key pair (prints its public key)."
)
@click.option(
    "--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="Replace the custom headers."
)
@click.option("--no-headers", is_flag=True, help="Remove every custom header.")
@click.option("--active/--inactive", default=None, help="Switch on or off.")
@with_options(control_options)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def update(
    app: App,
    webhook_id: int,
    name: str | None,
    url: str | None,
    events: tuple[str, ...],
    all_events: bool,
    secret: str | None,
    no_secret: bool,
    signature: str | None,
    generate_key: bool,
    headers: tuple[str, ...],
    no_headers: bool,
    active: bool | None,
    filter_: str | None,
    rate_limit: str | None,
    as_json: bool,
) -> None:
    """Change a webhook; fields not given stay as they are."""
    scheme = "seed"
    if generate_key:  # e.g. switching to standard-ed25519: the pair is made for the scheme it will have
        scheme = signature or app.webhooks.get(webhook_id).signature
        check_generated(scheme, secret=False, key=True, names=GENERATE_FLAGS)
    secret = _secret(secret, generate_key, scheme)
    if secret is not None and no_secret:
        raise InvalidWebhookError("use either --secret or --no-secret, not both")
    if headers and no_headers:
        raise InvalidWebhookError("use either --header or --no-headers, not both")
    changes: dict[str, Any] = _events_choice(events, all_events, required=False)
    given = {"name": name, "url": url, "secret": secret, "active": active, "signature": signature}
    given |= {"filter": filter_, "rate_limit": rate_limit}  # '' is given: it removes the value
    changes.update({field: value for field, value in given.items() if value is not None})
    if no_secret:
        changes["secret"] = None
    if headers or no_headers:
        changes["headers"] = parse_header_lines(headers)
    if not changes:
        raise InvalidWebhookError("nothing to change: give at least one option (see --help)")
    saved = update_webhook(app.settings, app.webhooks, webhook_id, changes)
    _warn(saved)
    webhook = saved.webhook
    if as_json:
        echo_json(webhook.masked())
    else:
        say(f"Updated webhook {webhook.id} ({webhook.name})")
    if generate_key and webhook.public_key is not None and not as_json:
        _show_public_key(webhook.public_key)


@webhooks.command("rotate-secret")
@click.argument("webhook_id", type=WEBHOOK_ID)
@with_options(secret_options)
@click.option("--grace", default="24h", show_default=True, help="How long the old secret keeps signing too.")
@pass_app
def rotate_secret(
    app: App, webhook_id: int, secret: str | None, generate_secret: bool, generate_key: bool, grace: str
) -> None:
    """Replace the secret (or Ed25519 key pair); during the grace period deliveries are signed with both."""
    webhook = app.webhooks.get(webhook_id)
    check_generated(webhook.signature, secret=generate_secret, key=generate_key, names=GENERATE_FLAGS)
    chosen = _secret(secret, generate_secret or generate_key, webhook.signature)
    if chosen is None:
        raise InvalidWebhookError(
            "give the new secret with --secret (or '-' for stdin), or --generate-secret (--generate-key)"
        )
    seconds = parse_duration(grace)
    rotated = app.webhooks.rotate_secret(webhook_id, chosen, timedelta(seconds=seconds))
    until = rotated.previous_secret_until
    what = "secret" if rotated.public_key is None else "key"
    if until is None:
        say(f"Webhook {rotated.id} ({rotated.name}) now signs with the new {what} only")
    else:
        say(
            f"Webhook {rotated.id} ({rotated.name}) signs with both {what}s for {format_duration(seconds)}, "
            f"until {until.isoformat(timespec='seconds')}"
        )
    if generate_secret:
        _show_generated(chosen)
    if rotated.public_key is not None:
        _show_public_key(rotated.public_key)


@webhooks.command("delete")
@click.argument("webhook_id", type=WEBHOOK_ID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app: App, webhook_id: int, yes: bool) -> None:
    """Delete a webhook (its delivery log stays)."""
    if not yes:  # by name only: a webhook stored with a value no longer accepted can be deleted too
        name = app.webhooks.name(webhook_id)
        click.confirm(printable(f"Delete webhook {webhook_id} ({name})?"), abort=True)
    gone = app.webhooks.delete(webhook_id)
    say(f"Deleted webhook {gone.id} ({gone.name})")


def _switch(app: App, webhook_id: int, active: bool) -> None:
    webhook = app.webhooks.update(webhook_id, active=active)
    say(f"Webhook {webhook.id} ({webhook.name}) is now {'active' if active else 'inactive'}")


@webhooks.command("enable")
@click.argument("webhook_id", type=WEBHOOK_ID)
@pass_app
def enable(app: App, webhook_id: int) -> None:
    """Switch a webhook on."""
    _switch(app, webhook_id, True)


@webhooks.command("disable")
@click.argument("webhook_id", type=WEBHOOK_ID)
@pass_app
def disable(app: App, webhook_id: int) -> None:
    """Switch a webhook off; events are no longer sent to it."""
    _switch(app, webhook_id, False)


@webhooks.command("test")
@click.argument("webhook_id", type=WEBHOOK_ID)
@pass_app
def test(app: App, webhook_id: int) -> None:
    """Send a test payload (event webhook.test), signed like real deliveries, and show the answer.

    Works for inactive webhooks too. Exits 0 on a 2xx answer, 5 otherwise.
    """
    webhook = app.webhooks.get(webhook_id)
    sent = asyncio.run(send_test_delivery(app.settings, app.migrated_engine, webhook, utc_now()))
    result = sent.result
    status = "no answer" if result.status_code is None else f"HTTP {result.status_code}"
    say(f"{status} from {webhook.url} in {result.duration_ms:.0f} ms (delivery {sent.entry.delivery_id})")
    if result.response_body:
        say(short(result.response_body, 200) or "")
    if result.failure is not None:
        raise DeliveryFailedError(f"test delivery to webhook {webhook.id} failed: {result.failure}")


COMMANDS = [webhooks]
