"""Secrets (passwords, API keys): from the environment or a file, never from a command line, where
``ps`` and shell history show them to every user of the host. Blocking file reads."""

from __future__ import annotations

import os
from pathlib import Path

from replicator.errors import ConfigError


def read_secret(value: str | None, file: Path | None, what: str) -> str | None:
    """The secret from ``file`` (its first line) or ``value`` (e.g. the environment's); None when
    neither is given. Raises ConfigError for an unreadable or empty file, or when both are given."""
    if file is None:
        return value or None
    if value:
        raise ConfigError(f"the {what} is given twice (in the environment and in {file})", hint="keep one of them")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        hint = "check the path and its permissions"
        raise ConfigError(f"cannot read the {what} from {file}: {exc}", hint=hint) from exc
    if not lines or not lines[0]:
        raise ConfigError(f"{file} holds no {what} on its first line", hint=f"write the {what} on the first line")
    return lines[0]


def secret_from_env(env: str, file_env: str, what: str) -> str | None:
    """The secret in ``env``, or in the file ``file_env`` names. Raises ConfigError (see read_secret)."""
    path = os.environ.get(file_env)
    return read_secret(os.environ.get(env), Path(path) if path else None, what)
