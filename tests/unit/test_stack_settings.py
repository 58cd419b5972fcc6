"""Stack settings validation and the Kafka configuration they render (no server needed)."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.errors import ConfigError
from replicator.stack.control import load_settings, write_state
from replicator.stack.kafka import new_cluster_id, server_properties
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
    props = _props(server_properties(s, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert Path(props["log.dirs"]).is_absolute()
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"


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
    assert load_settings(tmp_path / "never-started") is None


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
