"""Structured logging: one JSON object a line (python-json-logger), or plain text for humans."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


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
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": settings.log_level},
            "mode": {"level": "WARNING" if settings.log_level == "INFO" else settings.log_level},
        },
    }
