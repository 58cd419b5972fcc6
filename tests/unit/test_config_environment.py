"""The ``REPLICATOR_*`` variables over a file's settings, for every setting a deployment (or a test on a
shared stack) must make its own while keeping the seed guide's file unchanged: groups, labels, ports,
a local Qdrant in place of the file's server, the cutover's pause and reverse replication. Every
command with ``--config`` sees them (the daemons and the commands that inspect them agree), and so
does ``migrate``, which reads the ports and the policy itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from replicator.cli import cli
from replicator.config import ConfigError, load_config
from replicator.config.environment import with_environment

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
ISOLATED = {
    "REPLICATOR_NEO4J_PASSWORD": "pw",
    "REPLICATOR_NEO4J_GROUP": "g1-neo4j",
    "REPLICATOR_NEO4J_ENTITY_LABEL": "Entity_t1",
    "REPLICATOR_NEO4J_TOMBSTONE_LABEL": "Tombstone_t1",
    "REPLICATOR_NEO4J_POSITION_LABEL": "Position_t1",
    "REPLICATOR_NEO4J_METRICS_PORT": "9611",
    "REPLICATOR_QDRANT_GROUP": "g1-qdrant",
    "REPLICATOR_QDRANT_PATH": "/tmp/q1",
    "REPLICATOR_QDRANT_METRICS_PORT": "9612",
    "REPLICATOR_SOURCE_METRICS_PORT": "9610",
    "REPLICATOR_CUTOVER_MAX_PAUSE": "10s",
    "REPLICATOR_CUTOVER_REVERSE": "false",
}


def test_the_variables_make_a_seed_file_a_deployment_of_its_own() -> None:
    loaded = load_config(SEED / "hybrid-migration.yaml", ISOLATED)
    cfg, overridden = with_environment(loaded.config, ISOLATED)
    assert cfg.neo4j is not None and cfg.qdrant is not None
    assert (cfg.neo4j.group, cfg.neo4j.sink, cfg.neo4j.metrics_port) == ("g1-neo4j", "g1-neo4j", 9611)
    graph = cfg.neo4j.graph
    assert (graph.entity_label, graph.tombstone_label, graph.position_label) == (
        "Entity_t1", "Tombstone_t1", "Position_t1")  # fmt: skip
    # the file's server url is replaced by the local path the variable names
    assert (cfg.qdrant.url, cfg.qdrant.path, cfg.qdrant.group, cfg.qdrant.sink) == (
        None, Path("/tmp/q1"), "g1-qdrant", "g1-qdrant")  # fmt: skip
    assert (cfg.source.metrics_port, cfg.cutover.max_pause_s, cfg.cutover.reverse) == (9610, 10.0, False)
    assert "REPLICATOR_NEO4J_ENTITY_LABEL -> neo4j.entity_label" in overridden
    assert "REPLICATOR_QDRANT_PATH -> qdrant.path" in overridden


def test_a_sink_name_set_in_the_file_stays_when_the_group_is_overridden(tmp_path: Path) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text("neo4j: {sink: my-sink}\n")
    cfg, _ = with_environment(load_config(path, {}).config, {"REPLICATOR_NEO4J_GROUP": "g2"})
    assert cfg.neo4j is not None and (cfg.neo4j.group, cfg.neo4j.sink) == ("g2", "my-sink")


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("REPLICATOR_NEO4J_METRICS_PORT", "ninety", "REPLICATOR_NEO4J_METRICS_PORT = 'ninety'"),
        ("REPLICATOR_CUTOVER_REVERSE", "maybe", "REPLICATOR_CUTOVER_REVERSE = 'maybe'"),
        ("REPLICATOR_CUTOVER_MAX_PAUSE", "soon", "REPLICATOR_CUTOVER_MAX_PAUSE = 'soon'"),
    ],
)
def test_a_variable_that_does_not_parse_is_named(name: str, value: str, said: str) -> None:
    loaded = load_config(SEED / "hybrid-migration.yaml", {"REPLICATOR_NEO4J_PASSWORD": "pw"})
    with pytest.raises(ConfigError) as raised:
        with_environment(loaded.config, {name: value})
    assert said in raised.value.message


def _params(path: tuple[str, ...], args: list[str]) -> dict[str, Any]:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    with command.make_context(" ".join(path), list(args)) as ctx:
        return dict(ctx.params)


def test_every_command_with_config_sees_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ISOLATED.items():
        monkeypatch.setenv(name, value)
    for name in ("REPLICATOR_SINK_GROUP", "REPLICATOR_METRICS_PORT", "REPLICATOR_QDRANT_URL", "REPLICATOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    args = ["--config", str(SEED / "hybrid-migration.yaml")]
    sink = _params(("sink", "neo4j"), args)
    assert (sink["group"], sink["sink_name"], sink["entity_label"], sink["metrics_port"]) == (
        "g1-neo4j", "g1-neo4j", "Entity_t1", 9611)  # fmt: skip
    qdrant = _params(("sink", "qdrant"), args)
    assert (qdrant["group"], qdrant["url"], qdrant["path"], qdrant["metrics_port"]) == (
        "g1-qdrant", None, Path("/tmp/q1"), 9612)  # fmt: skip
    for command, extra in ((("lag",), []), (("cutover",), ["--caxton-config", "caxton.yaml"])):
        seen = _params(command, [*args, *extra])
        assert (seen["neo4j_group"], seen["qdrant_group"], seen["position_label"]) == (
            "g1-neo4j", "g1-qdrant", "Position_t1")  # fmt: skip
        assert (seen["qdrant_url"], seen["qdrant_endpoint"]) == (None, "127.0.0.1:9612")
    cut = _params(("cutover",), [*args, "--caxton-config", "caxton.yaml"])
    assert (cut["max_pause"], cut["no_reverse"]) == ("10s", True)
