"""Logging set-up for the CLI's processes; the library itself only creates loggers."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TextIO

from assethooks.kafka import LIBRDKAFKA_LOGGER


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in record.__dict__.items() if key not in self._STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes lines in batches: at most every ``interval`` seconds, or at once for
    warnings and errors. The long-running processes log one line per delivery attempt; a write and flush
    per line would cost the event loop a system call (and the GIL) each time."""

    def __init__(self, stream: TextIO, *, interval: float = 0.25, json_lines: bool = False) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._interval = interval
        self._json_lines = json_lines
        self._second = -1
        self._second_text = ""
        self._flusher = threading.Thread(target=self._flush_regularly, name="log-flush", daemon=True)
        self._flusher.start()

    def info_line(self, name: str, message: str, fields: Mapping[str, object]) -> None:
        """Queue the INFO line of logger ``name`` as this handler's formatter would write it, without a
        ``LogRecord``, a caller lookup or a time formatted per line: for the line of every delivery attempt.
        ``fields`` are the JSON line's extra keys."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = (
                datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")
                if self._json_lines
                else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            )
        millis = int((now - second) * 1000)
        if self._json_lines:
            line = {
                "time": f"{self._second_text}.{millis:03d}+00:00",
                "level": "info",
                "logger": name,
                "message": message,
                **fields,
            }
            text = json.dumps(line, default=str) + self.terminator
        else:
            text = f"{self._second_text},{millis:03d} INFO {name}: {message}{self.terminator}"
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(text)

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` now; write it with the next batch (at once from WARNING up)."""
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        """Write the lines gathered so far."""
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if lines:
                self.stream.write("".join(lines))
            self.stream.flush()

    def _flush_regularly(self) -> None:
        while True:
            time.sleep(self._interval)
            self.flush()


def configure_logging(
    level: str, *, json_lines: bool = False, kafka_level: int | None = None, batched: bool = False
) -> None:
    """Send logs to stderr at ``level``; ``kafka_level`` sets librdkafka's own logger apart; ``batched``
    writes lines in batches (for the long-running processes)."""
    handler = (
        BatchingStreamHandler(sys.stderr, json_lines=json_lines)
        if batched
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    LIBRDKAFKA_LOGGER.setLevel(kafka_level if kafka_level is not None else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


InfoLine = Callable[[str, Mapping[str, object]], None]


def info_lines(logger: logging.Logger) -> InfoLine | None:
    """How to write ``logger``'s INFO lines on a hot path: straight to the batching handler when it is the
    one handler (as ``configure_logging(batched=True)`` sets up), else through ``logger.info``; ``None``
    when INFO is off for ``logger``."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    handlers = logging.getLogger().handlers
    if not logger.handlers and len(handlers) == 1 and isinstance(handlers[0], BatchingStreamHandler):
        return partial(handlers[0].info_line, logger.name)

    def through_logging(message: str, fields: Mapping[str, object]) -> None:
        logger.info("%s", message, extra=fields)

    return through_logging
