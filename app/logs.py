"""Structured logging: one JSON object a line (python-json-logger), or plain text for humans.

Every record passes `RedactFilter` on its way out: whatever a library puts in a message or a traceback (a
connection URL, a header), a configured secret never reaches the log.
"""

from __future__ import annotations

import logging
from typing import Any

from app.redact import redact
from app.settings import Settings


class RedactFilter(logging.Filter):
    """The backstop behind app.redact: formats the record's message and traceback now, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it, a filter must not raise into the caller
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Formatted here so the formatter (text or JSON) prints this redacted text instead of the exception.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def logging_config(settings: Settings) -> dict[str, Any]:
    """A dictConfig for Faust's worker (`logging_config`) and our own commands alike."""
    formatter: dict[str, Any]
    if settings.log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"redact": {"()": "app.logs.RedactFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": settings.log_level},
            "mode": {"level": "WARNING" if settings.log_level == "INFO" else settings.log_level},
        },
    }
