"""Removing credentials from source names before they reach a log line, an event or an error."""

from __future__ import annotations

import logging
import re
import urllib.parse

REDACTED = "***"

# user:password@ in the authority of any URL-looking string, even one urllib cannot parse.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]*)@")
# Query parameters that carry secrets in camera and streaming URLs.
_SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "token", "key", "secret", "auth", "signature"}
)


def redact(text: str) -> str:
    """Return ``text`` with URL passwords and secret query values replaced by ``***``.

    ``rtsp://admin:hunter2@10.0.0.5/stream?token=abc`` becomes
    ``rtsp://admin:***@10.0.0.5/stream?token=***``. Works on whole log messages too: every URL
    inside the text is redacted. Text without URLs is returned unchanged.
    """

    def userinfo(match: re.Match[str]) -> str:
        info = match.group("userinfo")
        user = info.split(":", 1)[0] if ":" in info else info
        hidden = f"{user}:{REDACTED}" if ":" in info else REDACTED
        return f"{match.group('scheme')}{hidden}@"

    text = _USERINFO.sub(userinfo, text)
    return re.sub(r"[?&][^\s#]*", _redact_query, text)


def _redact_query(match: re.Match[str]) -> str:
    query = match.group(0)
    parts = []
    for part in re.split(r"([?&])", query):
        if "=" in part:
            name, _, _value = part.partition("=")
            if urllib.parse.unquote(name).lower() in _SECRET_QUERY_KEYS:
                part = f"{name}={REDACTED}"
        parts.append(part)
    return "".join(parts)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's final message (see ``redact``).

    Installed on the CLI's handlers, so a URL with a password logged by any library (FFmpeg
    messages forwarded by PyAV included) never reaches the log with the password.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def install_log_redaction() -> None:
    """Add a ``RedactingFilter`` to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
