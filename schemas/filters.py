"""Payload filters: JMESPath expressions (jmespath.org) over the event JSON, chosen per webhook.

An event is delivered to a webhook with a filter only when the expression's result is truthy in JMESPath's
sense (not ``null``, ``false``, an empty string, list or object). Expressions are checked when saved and
compiled once per process.
"""

from __future__ import annotations

import jmespath
from jmespath.exceptions import JMESPathError

MAX_FILTER = 1000  # characters


def check_filter(expression: str) -> None:
    """Refuse an expression that does not compile, with one line naming the problem."""
    if len(expression) > MAX_FILTER:
        raise ValueError(f"a filter is at most {MAX_FILTER} characters")
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        problem = " ".join(str(exc).split())
        raise ValueError(f"filter is not a valid JMESPath expression: {problem}") from None
