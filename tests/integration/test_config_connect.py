"""``replicator config check --connect`` against the real Neo4j: a wrong password in the configuration is
named (server, user) with its fix, exit 2, no traceback; the right one passes. The test makes its own
user, so the failed login never counts against the shared stack's ``neo4j`` user (Neo4j locks a user
after three failures)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from replicator.sinks.settings import Neo4jSettings
from replicator.transport.settings import KafkaSettings


@pytest.fixture
def user(graph: Neo4jSettings) -> Iterator[tuple[str, str]]:
    name, password = f"cfg_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF") as admin:
        admin.execute_query(f"CREATE USER {name} SET PASSWORD $pw CHANGE NOT REQUIRED", pw=password,
                            database_="system")  # fmt: skip
        try:
            yield name, password
        finally:
            admin.execute_query(f"DROP USER {name} IF EXISTS", database_="system")


def _check(config: Path, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_NEO4J_PASSWORD")}
    return subprocess.run(
        [sys.executable, "-m", "replicator", "config", "check", str(config), "--connect"],
        capture_output=True, text=True, timeout=120, check=False, env={**env, "CFG_TEST_PASSWORD": password},
    )  # fmt: skip


def test_a_wrong_password_is_named_and_the_right_one_connects(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings, user: tuple[str, str]
) -> None:
    name, password = user
    config = tmp_path / "replicator.yaml"
    config.write_text(f"""\
kafka:
  bootstrap: {kafka.bootstrap_servers}
neo4j:
  uri: {graph.uri}
  user: {name}
  password: ${{CFG_TEST_PASSWORD}}
  database: {graph.database}
""")
    wrong = _check(config, "not-the-password")
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert f"user '{name}'" in wrong.stderr and "authentication failure" in wrong.stderr
    assert "hint:" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "not-the-password" not in wrong.stdout + wrong.stderr
    right = _check(config, password)
    assert right.returncode == 0, right.stdout + right.stderr
    assert f"answers as '{name}'" in right.stdout
