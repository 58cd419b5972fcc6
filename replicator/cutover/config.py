"""caxton.yaml: read the memory backend, switch it atomically, keep a backup, restore it.

The file is the runtime's, with its comments and layout: we change one scalar, ``memory.backend``,
in the text itself (not by re-dumping YAML, which would drop comments), then parse the result to
prove that exactly that value changed. Blocking file I/O.
"""

from __future__ import annotations

import os
import re
import stat
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


def read_text(path: Path) -> str:
    """The file's text. Raises ConfigError (missing, a directory, unreadable, not UTF-8)."""
    if not path.exists():
        raise ConfigError(f"no config file at {path}", hint="pass Caxton's caxton.yaml with --config")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", hint="pass Caxton's caxton.yaml (a readable UTF-8 file) with --config"
        ) from exc


def read_backend(path: Path) -> str:
    """memory.backend of ``path``. Raises ConfigError."""
    return str(_load(read_text(path), path)["memory"].get("backend", "embedded"))


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


def _write_like(target: Path, text: str, like: os.stat_result) -> None:
    """Write ``text`` to ``target`` through a temporary file in its directory that has ``like``'s mode
    and owner from the start (never readable by others in between), fsync it, rename it into place,
    fsync the directory. Raises OSError; ConfigError when the owner cannot be kept."""
    tmp = target.with_name(f".{target.name}.replicator-tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, stat.S_IMODE(like.st_mode))
        if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, like.st_uid, like.st_gid)
            except PermissionError as exc:
                raise ConfigError(
                    f"cannot keep the owner of {target} (uid {like.st_uid}, gid {like.st_gid}): {exc}",
                    hint="run the cutover as the file's owner (or root), so Caxton can still read its config",
                ) from exc
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)  # atomic on POSIX: readers see the old file or the new one
    finally:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file ``path`` names, keeping its mode, owner and, when ``path`` is a symlink, the
    link itself (the file it points to is rewritten)."""
    real = Path(os.path.realpath(path))
    _write_like(real, text, real.stat())


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".replicator-backup")


def switch_backend(path: Path, backend: str) -> Path:
    """Back up ``path`` as it is now (``<name>.replicator-backup``, replacing any earlier backup:
    cutover runs only when no other cutover is in effect, so the file as it is now is the original),
    then atomically set memory.backend. Returns the backup's path. Raises ConfigError (or OSError);
    on error the file is unchanged."""
    text = read_text(path)
    new = switched_text(text, path, backend)
    real = Path(os.path.realpath(path))
    like = real.stat()
    _write_like(backup_path(path), text, like)
    _write_like(real, new, like)
    return backup_path(path)


def switched(path: Path) -> bool:
    """Whether ``path`` names another backend than its backup (the cutover switched it). Raises ConfigError."""
    backup = backup_path(path)
    return backup.is_file() and read_backend(path) != read_backend(backup)


def restore_backend(path: Path) -> str | None:
    """Set memory.backend back to the backup's value, changing nothing else in the file (edits the
    operator made since the cutover stay), then remove the backup. Returns the backend restored, or
    None when there is no backup. Raises ConfigError (or OSError)."""
    backup = backup_path(path)
    if not backup.is_file():
        return None
    original = read_backend(backup)
    text = read_text(path)
    if read_backend(path) != original:
        _write_atomically(path, switched_text(text, path, original))
    backup.unlink()
    return original
