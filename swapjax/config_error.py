"""The error every config section raises, and the one-line check that raises it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and the fix."""


def require(ok: bool, message: str) -> None:
    """Raises `ConfigError(message)` unless `ok`."""
    if not ok:
        raise ConfigError(message)
