"""Stack settings validation and the Kafka configuration they render (no server needed)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.errors import ConfigError, StackError
from replicator.stack.control import load_settings, servers, write_state
from replicator.stack.kafka import check_layout, cluster_id, new_cluster_id, server_properties
from replicator.stack.settings import StackSettings


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_defaults_are_the_documented_ports() -> None:
    s = StackSettings()
    assert (s.kafka_bootstrap, s.bolt_uri) == ("127.0.0.1:9092", "bolt://127.0.0.1:7687")


@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_out_of_range_port_is_refused_naming_the_flag(port: int) -> None:
    with pytest.raises(ConfigError, match=f"--bolt-port {port} is not a TCP port"):
        StackSettings(bolt_port=port)


def test_colliding_ports_are_refused() -> None:
    with pytest.raises(ConfigError, match="ports must differ"):
        StackSettings(kafka_port=7687)


def test_short_neo4j_password_is_refused_but_empty_means_auth_off() -> None:
    with pytest.raises(ConfigError, match="at least 8"):
        StackSettings(neo4j_password="short")
    assert StackSettings(neo4j_password="").neo4j_password == ""


def test_server_properties_make_one_kraft_node_on_the_chosen_ports(tmp_path: Path) -> None:
    s = StackSettings(kafka_port=19092, kafka_controller_port=19093)
    props = _props(server_properties(s, 1, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert Path(props["log.dirs"]).is_absolute()
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("1", "1")


def test_three_brokers_take_consecutive_ports_and_form_one_quorum(tmp_path: Path) -> None:
    s = StackSettings(brokers=3, kafka_port=19092, bolt_port=17687)

    assert s.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert s.kafka_controller_port == 19095  # right after the client ports
    nodes = [_props(server_properties(s, n, tmp_path / f"d{n}")) for n in (1, 2, 3)]
    assert [p["node.id"] for p in nodes] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in nodes} == {"1@127.0.0.1:19095,2@127.0.0.1:19096,3@127.0.0.1:19097"}
    assert nodes[2]["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19097"
    assert nodes[2]["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19094"
    for props in nodes:  # the internal topics and the default for other topics: 3 copies, 2 in sync
        assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == props["min.insync.replicas"] == "2"
        assert props["default.replication.factor"] == "3"
        assert props["unclean.leader.election.enable"] == "false"
    assert [srv.name for srv in servers(s)] == ["kafka-1", "kafka-2", "kafka-3", "neo4j"]
    assert [srv.endpoint for srv in servers(s)][:3] == s.kafka_bootstrap.split(",")


def test_two_brokers_need_both_in_sync() -> None:
    props = _props(server_properties(StackSettings(brokers=2, kafka_port=19092), 1, Path("d")))
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("2", "2")


def test_a_broker_port_colliding_with_another_listener_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"ports must differ.*--kafka-port \(\+1 for broker 2\) 9093"):
        StackSettings(brokers=3, kafka_controller_port=9093)  # broker 2's client port


@pytest.mark.parametrize("brokers", [0, 6])
def test_broker_count_out_of_range_is_refused(brokers: int) -> None:
    with pytest.raises(ConfigError, match=f"--brokers {brokers} is out of range"):
        StackSettings(brokers=brokers)


def test_data_formatted_for_another_broker_count_is_refused(tmp_path: Path) -> None:
    one = StackSettings(root=tmp_path)
    check_layout(one)  # nothing formatted yet: any count is fine
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("node.id=1\n")
    check_layout(one)

    with pytest.raises(StackError, match=r"formatted for 1 broker\(s\) \(kafka\); asked for --brokers 3") as info:
        check_layout(StackSettings(root=tmp_path, brokers=3))
    assert "another --dir" in info.value.hint


def test_every_node_of_a_stack_is_formatted_with_one_cluster_id(tmp_path: Path) -> None:
    first = cluster_id(tmp_path)
    assert cluster_id(tmp_path) == first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_cluster_id_is_16_bytes_of_url_safe_base64() -> None:
    cid = new_cluster_id()
    assert len(cid) == 22
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    assert cid != new_cluster_id()


def test_recorded_settings_are_found_from_any_working_directory(tmp_path: Path) -> None:
    recorded = StackSettings(root=tmp_path / "stack", kafka_port=19092, bolt_port=17687)
    recorded.root.mkdir()
    write_state(recorded)

    loaded = load_settings(tmp_path / "stack")

    assert loaded is not None
    assert (loaded.root, loaded.kafka_port, loaded.bolt_port) == (tmp_path / "stack", 19092, 17687)
    assert loaded.brokers == 1 and loaded.kafka_controller_port == 19093
    assert load_settings(tmp_path / "never-started") is None


def test_recorded_settings_keep_the_broker_count(tmp_path: Path) -> None:
    recorded = StackSettings(root=tmp_path, brokers=3, kafka_port=19092, bolt_port=17687)
    write_state(recorded)

    loaded = load_settings(tmp_path)

    assert loaded == recorded
    assert loaded is not None and loaded.kafka_bootstrap.count(",") == 2


def test_settings_recorded_before_brokers_existed_mean_one_broker(tmp_path: Path) -> None:
    old = {"settings": {"root": str(tmp_path), "kafka_port": 9092, "kafka_controller_port": 9093, "bolt_port": 7687}}
    (tmp_path / "stack.json").write_text(json.dumps(old))

    loaded = load_settings(tmp_path)

    assert loaded is not None and (loaded.brokers, loaded.kafka_controller_port) == (1, 9093)


def test_stack_json_is_private_from_its_first_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It holds the Neo4j password: created 0600, never world-readable even for an instant (here: a
    crash right after the data is written, before any later chmod could run)."""
    settings = StackSettings(root=tmp_path)

    def crash_after_write(self: Path, mode: int, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed before chmod")

    monkeypatch.setattr(Path, "chmod", crash_after_write)
    old = os.umask(0o022)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            write_state(settings)
    finally:
        os.umask(old)
    assert settings.state_file.exists()
    assert stat.S_IMODE(settings.state_file.stat().st_mode) == 0o600
    leftovers = [p for p in tmp_path.iterdir() if p != settings.state_file]
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in leftovers), leftovers
