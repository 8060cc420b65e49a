"""How the CLI prints: aligned tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

Progress = Callable[[int], None]
PROGRESS_LINE_EVERY = 5.0  # seconds between two progress lines when output is not a terminal


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def echo_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as a plain aligned table with a header line."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[index]) for line in cells)]) for index, column in enumerate(columns)
    ]
    header = "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True))
    click.echo(header.rstrip())
    for line in cells:
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items()) or "-"
    return str(value)


def echo_fields(record: dict[str, Any]) -> None:
    """Print one record as ``name: value`` lines."""
    width = max(len(name) for name in record)
    for name, value in record.items():
        click.echo(f"{name.ljust(width)}  {_cell(value)}")


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Progress]:
    """Report progress of a long operation: a bar with counts and rate on a terminal, and a plain line
    every few seconds otherwise. Yields a function to call with the number of items just done."""
    started = time.monotonic()
    done = 0
    if sys.stdout.isatty() and total:
        with click.progressbar(
            length=total, label=label, show_pos=True, item_show_func=lambda rate: rate
        ) as bar:

            def advance_bar(count: int) -> None:
                nonlocal done
                done += count
                bar.update(count, f"{done / max(time.monotonic() - started, 1e-6):.0f}/s")

            yield advance_bar
        return
    last_line = started

    def advance(count: int) -> None:
        nonlocal done, last_line
        done += count
        now = time.monotonic()
        if now - last_line >= PROGRESS_LINE_EVERY:
            of_total = f" of {total}" if total else ""
            click.echo(f"{label}: {done}{of_total} ({done / (now - started):.0f}/s)")
            last_line = now

    yield advance


def short(text: str | None, width: int = 60) -> str | None:
    """``text`` on one line, cut to ``width`` characters."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
