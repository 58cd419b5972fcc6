"""References in a configuration file: ``${VAR}``, ``${VAR:-default}`` in any string, and secrets given
as a reference (``${NEO4J_PASSWORD}``, ``{file: path}``) rather than inline. Pure but for reading a
secret's file (blocking)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from replicator.config.model import Secret
from replicator.errors import ConfigError
from replicator.secrets import read_secret

_REFERENCE: Final = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
#: Set to 1 in the environment to accept secrets written in the file (as ``allow_inline_secrets: true``).
ALLOW_INLINE_ENV: Final = "REPLICATOR_ALLOW_INLINE_SECRETS"


def expand(key: str, text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every ``${VAR}`` / ``${VAR:-default}`` replaced. Raises ConfigError naming ``key``
    and the variable when one is unset and has no default (an empty variable counts as set for
    ``${VAR}``, as in a shell; ``:-`` also replaces an empty one)."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{key}: the variable {name} is not set",
                    hint=f"export {name}=..., or write ${{{name}:-default}} in the file",
                )
            return default
        return value

    return _REFERENCE.sub(one, text)


def leaf(key: str) -> str:
    """The last part of a dotted key (``neo4j.password`` -> ``password``)."""
    return key.rpartition(".")[2]


def has_reference(text: str) -> bool:
    return _REFERENCE.search(text) is not None


def secret(key: str, raw: object, environ: Mapping[str, str], base: Path, *, allow_inline: bool) -> Secret:
    """The secret ``raw`` at ``key`` stands for. ``raw`` is ``${VAR}`` (or any string with a reference),
    ``{file: path}`` (first line; relative to ``base``) or, only with ``allow_inline``, the secret itself.
    Raises ConfigError naming the key."""
    if isinstance(raw, Mapping):
        unknown = sorted(set(map(str, raw)) - {"file"})
        if unknown or not isinstance(raw.get("file"), str):
            raise ConfigError(f"{key}: a secret is `${{VAR}}` or {{file: path}}", hint=f"e.g. {leaf(key)}: "
                              "{file: ~/.config/caxton/neo4j-password}")  # fmt: skip
        path = _path(expand(f"{key}.file", raw["file"], environ), base)
        value = read_secret(None, path, key)
        assert value is not None  # read_secret returns the first line of a file or raises
        return Secret(value, f"file {path}")
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{key} must be a reference such as ${{NEO4J_PASSWORD}} or {{file: path}}",
                          hint="or remove the key to connect without one")  # fmt: skip
    if has_reference(raw):
        names = ", ".join("${" + m.group("name") + "}" for m in _REFERENCE.finditer(raw))
        return Secret(expand(key, raw, environ), names)
    if not allow_inline:
        raise ConfigError(
            f"{key} is written in the file: anyone who can read it (backups, a repository) has it",
            hint=f"write {leaf(key)}: ${{VAR}} or {{file: path}}; or, knowingly, set allow_inline_secrets: "
            f"true in the file (or {ALLOW_INLINE_ENV}=1)",
        )
    return Secret(raw, "inline")


def _path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path
