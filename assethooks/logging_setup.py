"""Logging set-up for the CLI's processes; the library itself only creates loggers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

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


def configure_logging(level: str, *, json_lines: bool = False, kafka_level: int | None = None) -> None:
    """Send logs to stderr at ``level``; ``kafka_level`` sets librdkafka's own logger apart."""
    handler = logging.StreamHandler(sys.stderr)
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
