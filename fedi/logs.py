"""Logging for every fedi process, with secrets redacted as a last line of defence.

The first defences are elsewhere: engines hide SQL parameters, the CLI prints one line per
error. This formatter catches what slips past them (a key in an exception message, a token
in a URL) in every log line and traceback, in fedi's own loggers and uvicorn's alike.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"

# A PEM block, or what is left of one after truncation (no END line).
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
# Password hashes in their usual encodings (argon2, bcrypt, scrypt, pbkdf2).
_HASH = re.compile(r"\$(?:argon2(?:id|i|d)|2[aby]|scrypt|pbkdf2[-_a-z0-9]*)\$[^\s'\")\]]+")
# name=value / name: value where the name says the value is a secret.
_NAMED = re.compile(
    r"(?i)\b((?:password|passwd|secret|token|session(?:[_-]?id)?|cookie|authorization|"
    r"api[_-]?key|private[_-]?key(?:[_-]?pem)?)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:bearer|basic)\s+)?[^\s'\",&;]+"
)
# A run of base64 / base64url characters, long enough to be key material or a token.
_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_SEGMENT = re.compile(r"[^/]+")


def _looks_random(text: str) -> bool:
    """Keys and tokens mix both cases and digits; words, slugs and hex digests don't."""
    return (
        len(text) >= 16 and re.search(r"[a-z]", text) is not None
        and re.search(r"[A-Z]", text) is not None and re.search(r"\d", text) is not None
    )


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.startswith("/") or "//" in run:
        # A URL or path: only its random-looking segments (an invite token, say) go.
        return _SEGMENT.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), run)
    return REDACTED if _looks_random(run) else run


def redact(text: str) -> str:
    """text with PEM blocks, password hashes, named secrets and token-like runs replaced."""
    text = _PEM.sub(REDACTED, text)
    text = _HASH.sub(REDACTED, text)
    text = _NAMED.sub(lambda m: m.group(1) + REDACTED, text)
    return _RUN.sub(_redact_run, text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual (traceback included), then redacts the whole text."""

    def format(self, record: logging.LogRecord) -> str:
        if _is_access(record):
            return super().format(record)
        return redact(super().format(record))


def _is_access(record: logging.LogRecord) -> bool:
    """An access-log line (fedi.web.accesslog): built only from a method, a route template,
    a status, a duration and an address, so there is nothing to redact, and redacting every
    request's line would cost the inbox measurably."""
    return isinstance(getattr(record, "access", None), dict)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and an access
    line's fields or an exception's text; every string redacted before it is encoded, so
    the line stays valid JSON."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "access", None)
        access = isinstance(fields, dict)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if access else redact(record.getMessage()),
        }
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level: str = "WARNING", log_format: str = "text") -> dict[str, Any]:
    """A dictConfig for fedi and uvicorn (also given to uvicorn, whose worker processes
    apply it themselves): one stderr handler, redacting."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"redacting": {"()": JsonFormatter} if log_format == "json"
                       else {"()": RedactingFormatter, "fmt": FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "redacting",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": level},
        # uvicorn's loggers propagate to the root handler instead of printing on their own.
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        },
    }


def configure(level: str = "WARNING", log_format: str = "text") -> None:
    logging.config.dictConfig(logging_config(level, log_format))
