"""``assethooks assets``: the asset-state projection the alerts read, for debugging alerts."""

from __future__ import annotations

from typing import Any

import click

from assethooks.alerts import AssetState
from assethooks.cli.base import App, Group, pass_app
from assethooks.cli.output import counted, echo_fields, echo_json, say
from assethooks.operator.replay import rewind_group
from assethooks.store.assets import clear_states, get_state, sent_alerts


def _plain(state: AssetState) -> dict[str, Any]:
    return {
        "asset_id": state.asset_id,
        "name": state.snapshot.get("name"),
        "gone": state.gone,
        "warranty_end": state.warranty_end,
        "maintenance_date": state.maintenance_date,
        "checkout": state.checkout_key,
        "checkout_due": state.checkout_due,
        "quantity": state.quantity,
        "min_quantity": state.min_quantity,
        "stock_drops": state.stock_drops,
        "last_position": f"{state.last_partition}@{state.last_offset}",
    }


@click.group("assets", cls=Group)
def assets() -> None:
    """The asset-state projection (what the alerts know of each asset)."""


@assets.command("show")
@click.argument("asset_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, asset_id: str, as_json: bool) -> None:
    """Show an asset's projected state and the alerts sent for it."""
    state = _plain(get_state(app.migrated_engine, asset_id))
    alerts = [
        {"key": key, "event": event, "sent_at": sent.isoformat() if sent else None}
        for key, event, sent in sent_alerts(app.migrated_engine, asset_id)
    ]
    if as_json:
        echo_json(state | {"alerts": alerts})
        return
    echo_fields(state)
    for alert in alerts:
        say(f"alert {alert['key']}: {'sent ' + alert['sent_at'] if alert['sent_at'] else 'claimed'}")


@assets.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def rebuild(app: App, yes: bool) -> None:
    """Forget the projection and read the source topic again from its beginning (projector stopped)."""
    if not yes:
        click.confirm("Forget the projection and rebuild it from the start of the topic?", abort=True)
    rewind_group(app.settings, None, app.settings.projector_group)
    removed = clear_states(app.migrated_engine)
    click.echo(
        f"forgot {counted(removed, 'asset state')}; "
        "the projector rebuilds them from the beginning when it starts"
    )


COMMANDS = [assets]
