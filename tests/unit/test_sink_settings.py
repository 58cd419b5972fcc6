"""Sink runner settings and the `replicator sink neo4j` command line, without servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator.cli import cli
from replicator.errors import ConfigError
from replicator.sinks.runner_settings import SinkRunnerSettings


def test_defaults_and_derived_names() -> None:
    s = SinkRunnerSettings(group="g1", topic_prefix="p.q")
    assert s.sink == "g1"
    assert s.topics == ["p.q.entities", "p.q.relations"]
    assert s.dlq_topic == "p.q.dlq"
    assert s.consumer()["isolation.level"] == "read_committed"
    assert s.consumer()["enable.auto.commit"] is False


@pytest.mark.parametrize(
    "kwargs",
    [{"group": ""}, {"group": "g", "topic_prefix": "x."}, {"group": "g", "batch_max_events": 0},
     {"group": "g", "backoff_initial_s": 9.0}, {"group": "g", "session_timeout_ms": 100},
     {"group": "g", "metrics_port": 70000}],
)  # fmt: skip
def test_invalid_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SinkRunnerSettings(**kwargs)  # type: ignore[arg-type]


def test_cli_lists_the_neo4j_sink_and_refuses_a_bad_label(tmp_path: Path) -> None:
    runner = CliRunner()
    assert "neo4j" in runner.invoke(cli, ["sink", "--help"]).output
    config = tmp_path / "sink.yaml"
    config.write_text("neo4j:\n  group: g\n  entity_label: 'bad label'\n")
    result = runner.invoke(cli, ["sink", "neo4j", "--config", str(config)])
    assert isinstance(result.exception, ConfigError)
    assert "bad label" in str(result.exception)
