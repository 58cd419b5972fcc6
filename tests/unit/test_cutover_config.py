"""caxton.yaml switching: one scalar changes, comments and layout stay, errors name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from replicator.errors import ConfigError
from replicator.migrate import config

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
    config.switch_backend(path, "qdrant")  # the first backup (the original) is kept
    assert config.restore_backup(path)
    assert path.read_text() == CAXTON
    assert not config.backup_path(path).exists()
    assert not config.restore_backup(path)


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
