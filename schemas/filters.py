"""Payload filters: JMESPath expressions (jmespath.org) over the event JSON, chosen per webhook.

An event is delivered to a webhook with a filter only when the expression's result is truthy in JMESPath's
sense (not ``null``, ``false``, an empty string, list or object; ``0`` is true). Expressions are checked
when saved and compiled once per process and webhook version (``PayloadFilter``).

An expression that fails on a document (a function given the wrong type, e.g. ``length(data.tags)`` where
``tags`` is a number) rejects that event: the filter could not vouch for it, and a filter often narrows what
an endpoint may see, so it fails closed. The first failure of each compiled filter is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import jmespath
from jmespath.exceptions import JMESPathError

MAX_FILTER = 1000  # characters
T = TypeVar("T")

log = logging.getLogger(__name__)


def check_filter(expression: str) -> None:
    """Refuse an expression that does not compile, with one line naming the problem."""
    if len(expression) > MAX_FILTER:
        raise ValueError(f"a filter is at most {MAX_FILTER} characters")
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        problem = " ".join(str(exc).split())
        raise ValueError(f"filter is not a valid JMESPath expression: {problem}") from None
    except RecursionError:  # the parser recurses per level: hundreds of nested "!" or "(" exhaust it
        raise ValueError("filter is nested too deeply") from None


def is_true(value: Any) -> bool:
    """JMESPath's truthiness: false for ``null``, ``false``, ``""``, ``[]`` and ``{}``; ``0`` is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


class PayloadFilter:
    """One webhook's filter, compiled once; ``accepts`` decides per event document (a parsed JSON value)."""

    __slots__ = ("_parsed", "expression", "failed", "webhook_id")

    def __init__(self, webhook_id: int, expression: str) -> None:
        self.webhook_id = webhook_id
        self.expression = expression
        self._parsed = jmespath.compile(expression)
        self.failed = 0  # evaluations that raised (each one rejected its event)

    def accepts(self, document: Any) -> bool:
        """True when the expression's result on ``document`` is truthy; never raises (a failure rejects)."""
        try:
            return is_true(self._parsed.search(document))
        except Exception as exc:  # fail closed; a broken filter must never stop the consumer
            self.failed += 1
            if self.failed == 1:
                log.warning(
                    "filter of webhook %d failed on an event, which it rejects (logged once): %s: %s",
                    self.webhook_id,
                    type(exc).__name__,
                    " ".join(str(exc).split())[:200],
                )
            return False


def split_by_filters(
    targets: Sequence[T], filters: Sequence[PayloadFilter | None], body: bytes
) -> tuple[list[T], list[T]]:
    """``targets`` (each with its filter, or ``None`` for none) as those that receive the event ``body`` and
    those whose filter rejects it. The body is parsed once, for all of them; one json cannot read (already
    validated, so never expected) is rejected by every filter."""
    try:
        document, readable = json.loads(body), True
    except ValueError:
        document, readable = None, False
    kept: list[T] = []
    rejected: list[T] = []
    for target, payload_filter in zip(targets, filters, strict=True):
        if payload_filter is None or (readable and payload_filter.accepts(document)):
            kept.append(target)
        else:
            rejected.append(target)
    return kept, rejected
