"""The demo's --layout mcp asks the MCP servers in their own environments; a missing one is refused
before any work, naming the command that creates it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator.demo import mcp_ask
from replicator.demo.cli import demo
from replicator.demo.demo import run_demo


def test_a_missing_mcp_environment_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mcp_ask.VENVS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(mcp_ask.McpUnavailable, match="neo4j-memory is missing") as caught:
        run_demo(tmp_path / "demo", layout="mcp")
    assert "bash .ci/install" in caught.value.hint
    assert not (tmp_path / "demo").exists()


def test_the_demo_takes_the_layout() -> None:
    out = CliRunner().invoke(demo, ["--help"]).output
    assert "--layout [caxton|mcp]" in out
