"""How the CLI prints: aligned tables for people, JSON for programs.

Text from outside (answers of endpoints, dead-lettered bytes, Kafka keys, error messages) may hold
characters that act on a terminal: escape sequences, carriage returns, bidi overrides. Every human printer
passes text through ``printable``, which writes them as Python-style escapes (``\\x1b``, ``\\u202e``);
JSON output is exact JSON, ASCII-only, so it escapes them too.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from assethooks.operator import Progress

PROGRESS_LINE_EVERY = 5.0  # seconds between two progress lines when output is not a terminal


# Control (Cc), format (Cf: bidi overrides, zero-width characters), surrogate (Cs: undecodable input)
# and line/paragraph separator (Zl, Zp) characters.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every character that could act on a terminal written as an escape (``\\x1b``,
    ``\\u202e``); with ``lines``, line breaks and tabs are kept."""
    if text.isprintable():
        return text
    return "".join(_escaped(char, lines) for char in text)


def _escaped(char: str, lines: bool) -> str:
    if (lines and char in "\n\t") or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def say(message: str, *, err: bool = False) -> None:
    """Print one line for people, outside text escaped."""
    click.echo(printable(message), err=err)


def say_text(text: str) -> None:
    """Print a block of text from outside (an answer, a payload) for people: its lines kept, everything
    else that could act on a terminal escaped."""
    click.echo(printable(text, lines=True))


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 attempt``, ``6,660 attempts``."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (ASCII only: control and bidi characters come out escaped)."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=True))


def echo_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as a plain aligned table with a header line."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[index]) for line in cells)]) for index, column in enumerate(columns)
    ]
    header = "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True))
    click.echo(header.rstrip())
    for line in cells:  # every cell is printable already
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return printable(",".join(str(item) for item in value))
    if isinstance(value, dict):
        return printable(",".join(f"{key}={item}" for key, item in value.items())) or "-"
    return printable(str(value))


def echo_fields(record: dict[str, Any]) -> None:
    """Print one record as ``name: value`` lines."""
    width = max(len(name) for name in record)
    for name, value in record.items():
        click.echo(f"{name.ljust(width)}  {_cell(value)}")  # names are ours, values printable


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
            of_total = f" of {total:,}" if total else ""
            click.echo(f"{label}: {done:,}{of_total} ({done / (now - started):.0f}/s)")
            last_line = now

    yield advance


def short(text: str | None, width: int = 60) -> str | None:
    """``text`` on one line, cut to ``width`` characters (before escaping)."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def shown_of(shown: int, total: int, exact: bool, noun: str, plural: str | None = None) -> str:
    """The last line of a listing: ``6 attempts``, or ``showing 50 of 6,660 attempts (--limit)`` when the
    listing was cut (``exact`` false: counting stopped at ``total``, there are more)."""
    if shown >= total and exact:
        return counted(total, noun, plural)
    more = "" if exact else "more than "
    return f"showing {shown:,} of {more}{total:,} {plural or noun + 's'} (--limit)"
