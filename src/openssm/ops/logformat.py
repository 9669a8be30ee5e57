"""The server's log output: ``text`` (one line for people) or ``json`` (one object a line, for log
shippers), both on stderr.

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id`` when
the line was written while an HTTP request was handled (the ``x-amzn-RequestId`` the client got),
``exception`` when there is a traceback, and the structured fields a record carries in its
``openssm`` attribute (``extra={"openssm": {...}}``: a refusal's principal, action, resource and
reason). Written by hand: a formatter is a few lines over ``json.dumps``, not worth a dependency.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Final, Literal

from openssm.ops import requestid

FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS_ATTRIBUTE: Final = "openssm"

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being handled (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = requestid.current.get()
        return True


def handler(log_format: LogFormat, stream: Any = None) -> logging.Handler:
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    out.addFilter(RequestIdFilter())
    return out


def configure(level: str, log_format: LogFormat) -> None:
    """Route the root logger to stderr in ``log_format`` at ``level`` (replacing its handlers)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(log_format))
    root.setLevel(level)
