"""Alpaca keys: read from the environment (or a ``.env`` file), never printed, logged or written.

:func:`load_credentials` takes ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` from the environment,
else from ``.env`` (python-dotenv; the environment is not modified). :func:`protect_logging` installs a
filter on every logging handler that replaces the key values with ``***`` in messages, arguments and
tracebacks, wherever they come from (ours, alpaca-py's, websockets'). :class:`Credentials` never shows
its values in a ``repr``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError

KEY_VAR = "APCA_API_KEY_ID"
SECRET_VAR = "APCA_API_SECRET_KEY"
MASK = "***"


@dataclass(frozen=True)
class Credentials:
    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)

    @property
    def secrets(self) -> tuple[str, str]:
        return self.key_id, self.secret_key


def load_credentials(env_file: str | Path | None = ".env") -> Credentials:
    """Keys from the environment, else from ``env_file``; a missing key is a one-line UserError."""
    values = {name: os.environ.get(name, "") for name in (KEY_VAR, SECRET_VAR)}
    if env_file is not None and not all(values.values()) and Path(env_file).is_file():
        from dotenv import dotenv_values

        from_file = dotenv_values(env_file)
        values = {name: values[name] or (from_file.get(name) or "") for name in values}
    missing = [name for name, value in values.items() if not value.strip()]
    if missing:
        raise UserError(f"Alpaca keys missing: set {KEY_VAR} and {SECRET_VAR} in the environment "
                        f"or in a .env file ({', '.join(missing)} not set)")
    return Credentials(values[KEY_VAR].strip(), values[SECRET_VAR].strip())


def redact(text: str, secrets) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks the secrets in a record's final message and traceback text before any handler writes it."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def protect_logging(secrets, *handlers: logging.Handler) -> RedactingFilter:
    """Attach one redacting filter to the root logger's handlers (and ``handlers``), and to the
    last-resort handler, so no log line shows a secret."""
    redacting = RedactingFilter(secrets)
    targets = [*logging.getLogger().handlers, *handlers]
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for handler in targets:
        if not any(isinstance(f, RedactingFilter) and f.secrets == redacting.secrets for f in handler.filters):
            handler.addFilter(redacting)
    return redacting
