"""caxton.yaml switching: one scalar changes, comments and layout stay, errors name the problem."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from replicator.cutover import config
from replicator.errors import ConfigError

CAXTON = config.sample_config()


def test_switch_changes_only_memory_backend(tmp_path: Path) -> None:
    path = tmp_path / "caxton.yaml"
    path.write_text(CAXTON)
    backup = config.switch_backend(path, "hybrid")
    new = path.read_text()
    assert backup.read_text() == CAXTON
    assert config.read_backend(path) == "hybrid"
    changed = [(a, b) for a, b in zip(CAXTON.splitlines(), new.splitlines(), strict=True) if a != b]
    assert changed == [
        ('  backend: "embedded"   # embedded | neo4j | qdrant | hybrid',
         '  backend: "hybrid"   # embedded | neo4j | qdrant | hybrid'),
    ]  # fmt: skip
    assert yaml.safe_load(new)["server"]["backend"] == "not-this-one"


def test_restore_puts_the_original_back_and_removes_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "caxton.yaml"
    path.write_text(CAXTON)
    config.switch_backend(path, "neo4j")
    assert config.switched(path)
    assert config.restore_backend(path) == "embedded"
    assert path.read_text() == CAXTON
    assert not config.backup_path(path).exists()
    assert config.restore_backend(path) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("memory: [\n", "not valid YAML"),
        ("server: {}\n", "no `memory:` section"),
        ("memory:\n  embedded: {}\n", "found 0 `backend:` keys"),
        ("memory: {backend: embedded}\n", "found 0 `backend:` keys"),
    ],
)
def test_unswitchable_files_are_refused_and_left_alone(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "caxton.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.switch_backend(path, "neo4j")
    assert path.read_text() == text
    assert not config.backup_path(path).exists()


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "caxton.yaml"
    path.write_text(CAXTON)
    with pytest.raises(ConfigError, match="unknown backend"):
        config.switch_backend(path, "postgres")


def test_the_rewrite_is_never_more_readable_than_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """caxton.yaml may hold credentials: the temporary file that replaces it has its mode from the
    first byte written (checked at every fsync, i.e. while it is being written), and keeps it."""
    path = tmp_path / "caxton.yaml"
    path.write_text(CAXTON)
    path.chmod(0o600)
    modes: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old = os.umask(0o022)
    try:
        config.switch_backend(path, "neo4j")
    finally:
        os.umask(old)
    files = [m for m in modes if m & 0o777 and not m & stat.S_IXUSR]  # the directory's fsync is 0o755
    assert files and all(m == 0o600 for m in files), [oct(m) for m in modes]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.backup_path(path).stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_the_rewrite_keeps_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "caxton.yaml"
    path.write_text(CAXTON)
    os.chown(path, 4321, 4321)  # the runtime's user, not the one running the cutover
    config.switch_backend(path, "hybrid")
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)
    config.restore_backend(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)


def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "etc" / "caxton.yaml"
    real.parent.mkdir()
    real.write_text(CAXTON)
    link = tmp_path / "caxton.yaml"
    link.symlink_to(real)
    config.switch_backend(link, "qdrant")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert config.read_backend(real) == "qdrant"
    assert config.restore_backend(link) == "embedded"
    assert link.is_symlink() and real.read_text() == CAXTON


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_an_unreadable_config_is_a_named_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "caxton.yaml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe memory: {}")
    with pytest.raises(ConfigError, match=f"cannot read {path}"):
        config.read_backend(path)
    with pytest.raises(ConfigError, match=f"cannot read {path}"):
        config.switch_backend(path, "neo4j")
