"""Every command reads replicator.yaml with one option, ``--config`` (or REPLICATOR_CONFIG), and resolves
each setting as flag > REPLICATOR_* variable > file > default: a daemon and the commands that inspect it
get the same names from the same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from replicator.cli import cli
from replicator.clioptions import CONFIG_ENV, PRECEDENCE, config_option, secret_option
from replicator.cutover.config import sample_config
from replicator.errors import ConfigError
from replicator.secrets import read_secret

#: Development-only commands (the local stack, its smoke test, the demo) take no replicator.yaml; the
#: `config` commands take it as their argument.
DEVELOPMENT = {"stack", "smoke", "demo", "config"}
#: Commands that read no migration setting: `reverse plugin` compiles a jar against a server's lib/.
NO_SETTINGS = {("reverse", "plugin")}

CONFIG = """\
store:
  path: ./memory.db
  caxton_config: ./caxton.yaml
kafka:
  topic_prefix: cfg.prefix
neo4j:
  password: ${CFG_PW}
  entity_label: Entity_cfg
  position_label: Position_cfg
  group: cfg-neo4j
  sink: cfg-neo4j-sink
  batch_size: 7
qdrant:
  path: ./qdrant
  collection: cfg_collection
  group: cfg-qdrant
  metrics_port: 9555
cutover:
  max_pause: 2s
  max_lag: 50
"""


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        if not path and name in DEVELOPMENT:
            continue
        if isinstance(command, click.Group):
            if command.params:  # a group that runs by itself (sink qdrant)
                out.append(((*path, name), command))
            out.extend(_commands(command, (*path, name)))
        else:
            out.append(((*path, name), command))
    return out


def _params(path: tuple[str, ...], args: list[str]) -> dict[str, Any]:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    with command.make_context(" ".join(path), list(args)) as ctx:  # click consumes the list
        return dict(ctx.params)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("REPLICATOR_TOPIC_PREFIX", "REPLICATOR_NEO4J_URI", "REPLICATOR_NEO4J_PASSWORD", CONFIG_ENV,
                 "REPLICATOR_NEO4J_PASSWORD_FILE", "REPLICATOR_SOURCE_DB", "REPLICATOR_STORE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CFG_PW", "pw-from-variable")
    path = tmp_path / "replicator.yaml"
    path.write_text(CONFIG)
    return path


def test_every_command_takes_config_with_its_variable() -> None:
    missing = []
    for path, command in _commands(cli):
        if path in NO_SETTINGS:
            continue
        options = [p for p in command.params if isinstance(p, click.Option) and "--config" in p.opts]
        if not options or options[0].envvar != CONFIG_ENV or PRECEDENCE not in (options[0].help or ""):
            missing.append(" ".join(path))
    assert missing == []


def test_a_daemon_and_the_commands_that_inspect_it_read_the_same_names(config: Path) -> None:
    args = ["--config", str(config)]
    sink = _params(("sink", "neo4j"), args)
    assert (sink["topic_prefix"], sink["group"], sink["sink_name"], sink["entity_label"], sink["batch_size"]) == (
        "cfg.prefix", "cfg-neo4j", "cfg-neo4j-sink", "Entity_cfg", 7)  # fmt: skip
    qdrant = _params(("sink", "qdrant"), args)
    assert (qdrant["group"], qdrant["collection"], qdrant["metrics_port"]) == ("cfg-qdrant", "cfg_collection", 9555)
    assert qdrant["path"] == config.parent / "qdrant"
    source = _params(("source", "run"), args)
    assert (source["db"], source["topic_prefix"]) == (config.parent / "memory.db", "cfg.prefix")
    for command in (("lag",), ("cutover",), ("rollback",)):
        seen = _params(command, args)
        assert (seen["db"], seen["topic_prefix"], seen["neo4j_group"], seen["neo4j_sink"]) == (
            config.parent / "memory.db", "cfg.prefix", "cfg-neo4j", "cfg-neo4j-sink")  # fmt: skip
        assert (seen["entity_label"], seen["position_label"], seen["collection"]) == (
            "Entity_cfg", "Position_cfg", "cfg_collection")  # fmt: skip
        assert (seen["qdrant_group"], seen["qdrant_endpoint"]) == ("cfg-qdrant", "127.0.0.1:9555")
        assert seen["caxton_config"] if command != ("lag",) else seen["kinds"] == ("neo4j", "qdrant")
    for command in (("validate",), ("stats",), ("check",), ("watch",), ("tune",)):
        seen = _params(command, args)
        assert (seen["entity_label"], seen["collection"], seen["neo4j_password"]) == (
            "Entity_cfg", "cfg_collection", "pw-from-variable")  # fmt: skip
    cut = _params(("cutover",), args)
    assert (cut["target"], cut["max_pause"], cut["max_lag"], cut["caxton_config"]) == (
        "hybrid", "2s", 50, config.parent / "caxton.yaml")  # fmt: skip


def test_precedence_is_flag_then_variable_then_file_then_default(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _params(("lag",), [])["topic_prefix"] == "caxton.memory"  # default
    assert _params(("lag",), ["--config", str(config)])["topic_prefix"] == "cfg.prefix"  # file
    monkeypatch.setenv("REPLICATOR_TOPIC_PREFIX", "env.prefix")
    for command in (("lag",), ("sink", "neo4j"), ("source", "run")):
        assert _params(command, ["--config", str(config)])["topic_prefix"] == "env.prefix"  # variable
        assert _params(command, ["--config", str(config), "--topic-prefix", "flag.prefix"])["topic_prefix"] == (
            "flag.prefix")  # fmt: skip
    monkeypatch.setenv(CONFIG_ENV, str(config))  # the file from REPLICATOR_CONFIG
    assert _params(("lag",), [])["neo4j_group"] == "cfg-neo4j"


def test_a_password_file_overrides_the_configured_password(config: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    seen: list[str | None] = []

    @click.command()
    @config_option()
    @secret_option("--neo4j-password", "REPLICATOR_NEO4J_PASSWORD", "REPLICATOR_NEO4J_PASSWORD_FILE", "Neo4j password")
    def probe(neo4j_password: str | None, neo4j_password_file: Path | None) -> None:
        seen.append(read_secret(neo4j_password, neo4j_password_file, "Neo4j password"))

    (tmp_path / "pw").write_text("pw-from-file\n")
    runner = CliRunner()
    assert runner.invoke(probe, ["--config", str(config)], catch_exceptions=False).exit_code == 0
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD_FILE", str(tmp_path / "pw"))
    assert runner.invoke(probe, ["--config", str(config)], catch_exceptions=False).exit_code == 0
    assert seen == ["pw-from-variable", "pw-from-file"]


def test_caxton_yaml_given_to_config_names_caxton_config(tmp_path: Path) -> None:
    caxton = tmp_path / "caxton.yaml"
    caxton.write_text(sample_config())
    result = CliRunner().invoke(cli, ["cutover", "--config", str(caxton), "--target", "neo4j"])
    assert isinstance(result.exception, ConfigError)
    assert "--caxton-config" in str(result.exception)


def test_a_layout_a_command_cannot_use_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text("neo4j:\n  layout: mcp\n")
    assert _params(("validate",), ["--config", str(path)])["layout"] == "mcp"  # validate reads both layouts
    both = tmp_path / "both.yaml"
    both.write_text("neo4j:\n  layout: mcp\nqdrant:\n  layout: caxton\n")
    with pytest.raises(ConfigError, match=r"neo4j.layout \(mcp\) and qdrant.layout \(caxton\) differ"):
        _params(("validate",), ["--config", str(both)])  # one --layout reads both destinations


def test_cutover_confirm_in_the_file_asks_before_the_fence(tmp_path: Path) -> None:
    (tmp_path / "caxton.yaml").write_text(sample_config())
    path = tmp_path / "replicator.yaml"
    path.write_text("store: {caxton_config: caxton.yaml}\nneo4j: {}\ncutover: {confirm: true}\n")
    result = CliRunner().invoke(cli, ["cutover", "--config", str(path)], input="n\n")
    assert "cut over to neo4j now? [y/N]" in result.output
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1  # click.Abort: nothing started
    assert not list(tmp_path.glob("*.migration.json"))


def test_the_sinks_dead_letter_topic_gets_the_files_replication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replicator.sinks.cli import runner_settings  # noqa: PLC0415

    for name in ("REPLICATOR_KAFKA_REPLICATION_FACTOR", "REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "replicator.yaml"
    path.write_text("kafka: {replication_factor: 3, min_insync_replicas: 2}\nneo4j: {}\n")
    command = cli.commands["sink"].commands["neo4j"]  # type: ignore[attr-defined]
    with command.make_context("neo4j", ["--config", str(path)]) as ctx:
        settings = runner_settings(dict(ctx.params), ("entities", "relations"))
    assert (settings.kafka.replication_factor, settings.kafka.min_insync_replicas) == (3, 2)


def test_the_precedence_is_stated_in_the_root_help() -> None:
    assert PRECEDENCE in " ".join(CliRunner().invoke(cli, ["--help"]).output.split())


def test_a_command_with_layout_takes_the_files_and_two_layouts_for_one_flag_are_refused(tmp_path: Path) -> None:
    @click.command()
    @config_option()
    @click.option("--layout", type=click.Choice(["caxton", "mcp"]), default="caxton")
    @click.option("--neo4j-uri")
    @click.option("--qdrant-url")
    def reader(layout: str, neo4j_uri: str | None, qdrant_url: str | None) -> None:
        click.echo(layout)

    path = tmp_path / "replicator.yaml"
    path.write_text("neo4j: {layout: mcp}\nqdrant: {url: 'http://q:6333', layout: mcp}\n")
    assert CliRunner().invoke(reader, ["--config", str(path)]).output == "mcp\n"
    path.write_text("neo4j: {layout: mcp}\nqdrant: {url: 'http://q:6333'}\n")
    result = CliRunner().invoke(reader, ["--config", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert "neo4j.layout (mcp) and qdrant.layout (caxton) differ" in str(result.exception)


def test_cutover_reverse_false_in_the_file_is_cutovers_no_reverse(tmp_path: Path) -> None:
    """A deployment whose Neo4j cannot load the changelog plugin opts out in the file, so that
    `migrate` (which runs `cutover --config`) can cut over too."""
    path = tmp_path / "replicator.yaml"
    path.write_text("neo4j: {}\ncutover:\n  reverse: false\n")
    args = ["--config", str(path), "--caxton-config", str(tmp_path / "caxton.yaml")]
    assert _params(("cutover",), args)["no_reverse"] is True
    path.write_text("neo4j: {}\n")
    assert _params(("cutover",), args)["no_reverse"] is False
