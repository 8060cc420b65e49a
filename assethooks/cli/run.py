"""``assethooks webhooks …``: the seed's Webhooks screen as commands."""
from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
