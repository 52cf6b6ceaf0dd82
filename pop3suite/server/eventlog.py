"""Structured log records of the reference server (``serve --log-format``).

One record per event an operator acts on: a session's end, a failed login,
an SMTP relay decision, a connection refused.  Each is logged through the
stdlib :mod:`logging` module with its fields attached (``extra``), and its
message is the same stable text in both formats::

    login failed: address=192.0.2.7 user="bob" method=USER reason=bad-credentials listener=pop3

so one fail2ban filter (docs/fail2ban/) matches a text log and a JSON log
alike.  Field values a client chose (a user name) are JSON-quoted and cut to
64 characters: a name with a newline or ``address=`` in it cannot forge a
line or a field.  Passwords, APOP digests and SASL blobs are never fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

#: Loggers of the server: sessions and listeners, SMTP.
SERVER_LOG = "pop3suite.server"
LOG_LEVELS = ("debug", "info", "warning")
LOG_FORMATS = ("text", "json")
_CLIENT_TEXT_MAX = 64


def client_text(value: str | None) -> str:
    """A client-chosen string as a quoted, single-line, bounded token."""
    if value is None:
        return '""'
    return json.dumps(value[:_CLIENT_TEXT_MAX], ensure_ascii=True)


def emit(logger: logging.Logger, level: int, event: str, fields: dict[str, Any]) -> None:
    """Log ``event`` with ``fields`` as ``event: k=v k=v`` plus structured extras.

    String fields marked as client-chosen must already be passed through
    :func:`client_text` by the caller; other values are printed as they are.
    """
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={_token(value)}" for key, value in fields.items())
    logger.log(level, "%s: %s", event.replace("_", " "), text, extra={"event": event, "fields": fields})


def _token(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, message and the
    event's fields (client-chosen strings unquoted again: JSON escapes them)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "message"),
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            if isinstance(value, str) and value.startswith('"'):
                value = json.loads(value)
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send the ``pop3suite`` loggers (and the root logger's warnings) to
    ``stream`` (stderr) at ``level`` in ``fmt``.  Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("pop3suite").setLevel(getattr(logging, level.upper()))
    return handler
