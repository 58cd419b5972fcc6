"""caxton.yaml: read the memory backend, switch it atomically, keep a backup, restore it.

The file is the runtime's, with its comments and layout: we change one scalar, ``memory.backend``,
in the text itself (not by re-dumping YAML, which would drop comments), then parse the result to
prove that exactly that value changed. Blocking file I/O.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Final

import yaml

from replicator.errors import ConfigError

BACKENDS: Final = ("embedded", "neo4j", "qdrant", "hybrid")


def sample_config(database_path: str = "./data/memory.db") -> str:
    """A caxton.yaml as STORE.md shows it (with a comment and a decoy ``backend`` key outside
    ``memory:``), for the demo and the tests."""
    return f"""\
# Caxton runtime configuration
server:
  port: 8080
  backend: "not-this-one"   # a backend key outside memory: must not be touched
memory:
  # which store the runtime uses
  backend: "embedded"   # embedded | neo4j | qdrant | hybrid
  embedded: {{ database_path: "{database_path}" }}
  neo4j:   {{ uri: "bolt://localhost:7687", username: "caxton", password: "${{NEO4J_PASSWORD}}", database: "neo4j" }}
  qdrant:  {{ url: "http://localhost:6333", collection: "caxton_embeddings" }}
logging:
  level: info
"""


_BACKEND_LINE = re.compile(r"^(?P<indent>[ \t]+)backend:[ \t]*(?P<value>\"[^\"]*\"|'[^']*'|[^\s#]+)(?P<rest>.*)$")


def _load(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", hint="fix the file; nothing was changed") from exc
    if not isinstance(data, dict) or not isinstance(data.get("memory"), dict):
        raise ConfigError(f"{path} has no `memory:` section", hint="pass Caxton's caxton.yaml with --config")
    return data


def read_backend(path: Path) -> str:
    """memory.backend of ``path``. Raises ConfigError."""
    if not path.is_file():
        raise ConfigError(f"no config file at {path}", hint="pass Caxton's caxton.yaml with --config")
    return str(_load(path.read_text(), path)["memory"].get("backend", "embedded"))


def switched_text(text: str, path: Path, backend: str) -> str:
    """``text`` with memory.backend set to ``backend``, everything else byte-identical. Pure.
    Raises ConfigError if the key cannot be found unambiguously."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"one of {', '.join(BACKENDS)}")
    before = _load(text, path)
    lines = text.splitlines(keepends=True)
    in_memory = False
    memory_indent = ""
    hits: list[int] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if re.match(r"^memory:\s*(#.*)?$", line):
            in_memory, memory_indent = True, indent
            continue
        if in_memory and len(indent) <= len(memory_indent):
            in_memory = False
        if in_memory and _BACKEND_LINE.match(line.rstrip("\r\n")):
            hits.append(i)
    if len(hits) != 1:
        raise ConfigError(
            f"{path}: found {len(hits)} `backend:` keys directly under `memory:`",
            hint="set memory.backend on one line (backend: embedded) so cutover can switch it",
        )
    i = hits[0]
    ending = lines[i][len(lines[i].rstrip("\r\n")) :]
    match = _BACKEND_LINE.match(lines[i].rstrip("\r\n"))
    assert match is not None
    lines[i] = f'{match["indent"]}backend: "{backend}"{match["rest"]}{ending}'
    new = "".join(lines)
    after = _load(new, path)
    before["memory"]["backend"] = backend
    if before != after or after["memory"]["backend"] != backend:
        raise ConfigError(f"{path}: switching the backend would change more than memory.backend", hint="report this")
    return new


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.replicator-tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    shutil.copymode(path, tmp)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".replicator-backup")


def switch_backend(path: Path, backend: str) -> Path:
    """Back up ``path`` (``<name>.replicator-backup``, kept if one exists), then atomically set memory.backend.
    Returns the backup's path. Raises ConfigError; on error the file is unchanged."""
    if not path.is_file():
        raise ConfigError(f"no config file at {path}", hint="pass Caxton's caxton.yaml with --config")
    text = path.read_text()
    new = switched_text(text, path, backend)
    backup = backup_path(path)
    if not backup.exists():  # an existing backup is the pre-migration original: keep it
        shutil.copy2(path, backup)
    _write_atomically(path, new)
    return backup


def restore_backup(path: Path) -> bool:
    """Put the backup back in place (atomically). Returns False when there is no backup."""
    backup = backup_path(path)
    if not backup.is_file():
        return False
    _write_atomically(path, backup.read_text())
    backup.unlink()
    return True
