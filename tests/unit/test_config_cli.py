"""``replicator config init | check``, and the errors an operator's mistake in the file gets from any
command: one line naming the key (or variable) and the fix, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator.cli import cli
from replicator.config import load_config
from replicator.config.model import MigrationConfig, Neo4jConfig, QdrantConfig
from replicator.config.template import shown

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
SEED_FILES = ("migration-config.yaml", "neo4j-migration.yaml", "qdrant-migration.yaml", "hybrid-migration.yaml")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_") and k != "NEO4J_PASSWORD"}
    return subprocess.run([sys.executable, "-m", "replicator", *args], capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})}, check=False)  # fmt: skip


def test_init_writes_every_key_with_its_default_and_it_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "replicator.yaml"
    result = CliRunner().invoke(cli, ["config", "init", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "# Caxton's memory store (SQLite), the source" in text and 'password: "${NEO4J_PASSWORD}"' in text
    loaded = load_config(out, {"NEO4J_PASSWORD": "x"}).config
    defaults = MigrationConfig(neo4j=Neo4jConfig(), qdrant=QdrantConfig(path=Path("x")))
    expected, got = shown(defaults), shown(loaded)
    for section in ("kafka", "source", "cutover", "validation"):
        assert got[section] == expected[section]
    assert {k: v for k, v in got["neo4j"].items() if k != "password"} == {
        k: v for k, v in expected["neo4j"].items() if k != "password"}  # fmt: skip
    again = CliRunner().invoke(cli, ["config", "init", "--output", str(out)])
    assert again.exit_code != 0 and "--force" in str(again.exception)


@pytest.mark.parametrize("name", SEED_FILES)
def test_init_from_a_seed_file_keeps_its_values_and_never_an_inline_password(tmp_path: Path, name: str) -> None:
    out = tmp_path / "replicator.yaml"
    result = CliRunner().invoke(cli, ["config", "init", "--from-seed", str(SEED / name), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert '"password"' not in out.read_text()  # the guide's inline password became a reference
    converted = load_config(out, {"NEO4J_PASSWORD": "x"}).config
    original = load_config(SEED / name, {"NEO4J_PASSWORD": "x", "REPLICATOR_ALLOW_INLINE_SECRETS": "1"}).config
    assert converted.target == original.target and converted.strategy == original.strategy
    assert converted.neo4j == original.neo4j if original.neo4j is None else (
        converted.neo4j is not None and converted.neo4j.graph == original.neo4j.graph
        and converted.neo4j.uri == original.neo4j.uri)  # fmt: skip
    assert (converted.qdrant is None) == (original.qdrant is None)


def test_check_prints_the_configuration_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text("neo4j:\n  password: ${CFG_PW}\n")
    proc = _run("config", "check", str(path), env={"CFG_PW": "hunter2-secret"})
    assert proc.returncode == 0, proc.stderr
    assert 'password: "****** (from ${CFG_PW})"' in proc.stdout and "hunter2" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("neo4j:\n  entity_lable: Person\n", "unknown key neo4j.entity_lable\n  hint: did you mean entity_label?"),
        ("neo4j:\n  password: ${NEO4J_PASSWORD}\n", "error: neo4j.password: the variable NEO4J_PASSWORD is not set"),
        ("kafka:\n  partitions: three\n", "error: kafka.partitions = 'three' is not a whole number"),
        ("neo4j:\n  password: hunter2\n", "error: neo4j.password is written in the file"),
        ("qdrant:\n  path: q\n  vector_size: 768\n", "error: qdrant.vector_size 768 is not the model's"),
    ],
)  # fmt: skip
def test_a_mistake_in_the_file_is_named_before_anything_starts(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text(text)
    commands = (["config", "check"], ["lag", "--config"], ["sink", "neo4j", "--config"], ["source", "run", "--config"])
    for argv in ([*command, str(path)] for command in commands):
        proc = _run(*argv)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert said in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    proc = _run("config", "check", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read the configuration" in proc.stderr and "Traceback" not in proc.stderr
