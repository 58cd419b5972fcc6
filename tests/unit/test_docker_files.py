"""docker/ cannot run here (no engine): check that the compose file and Dockerfile hang together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from replicator.transport.settings import replication_for

DOCKER = Path(__file__).resolve().parents[2] / "docker"
REPLICATOR_SERVICES = {"replicator-source", "replicator-sink-neo4j", "replicator-sink-qdrant"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_services_and_kraft_kafka() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"kafka", "neo4j", "qdrant", *REPLICATOR_SERVICES}
    assert set(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in (DOCKER / "compose.yaml").read_text().lower()


def test_replicator_services_build_the_image_and_reach_kafka() -> None:
    services = _compose()["services"]
    for name in REPLICATOR_SERVICES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        assert services[name]["environment"]["REPLICATOR_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_source_runs_as_the_owner_of_the_mounted_store() -> None:
    source = _compose()["services"]["replicator-source"]
    assert source["user"] == "${REPLICATOR_UID:-1000}:${REPLICATOR_GID:-1000}"
    assert any(v.endswith(":/data") for v in source["volumes"])


def test_dependencies_and_volumes_are_declared() -> None:
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".", "$")):
                assert source in compose["volumes"], (name, source)


def test_dockerfile_is_offline_pinned_and_unprivileged() -> None:
    lines = [line.strip() for line in (DOCKER / "Dockerfile").read_text().splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) == 1
    assert any("HF_HUB_OFFLINE=1" in line for line in lines)
    assert any("--constraint .ci/constraints.txt" in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["replicator"]' in lines


def _merged(*names: str) -> dict[str, Any]:
    """Compose files applied in order, as `docker compose -f a -f b` merges them: mappings key by key,
    sequences (ports, volumes) appended, scalars replaced."""

    def merge(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            return {k: merge(base[k], v) if k in base else v for k, v in override.items()} | {
                k: v for k, v in base.items() if k not in override
            }
        if isinstance(base, list) and isinstance(override, list):
            return base + [item for item in override if item not in base]
        return override

    result: dict[str, Any] = {}
    for name in names:
        result = merge(result, yaml.safe_load((DOCKER / name).read_text()))
    return result


#: What differs from one broker to the next; every other KAFKA_* setting is the cluster's.
_PER_NODE = {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"}


def test_three_broker_file_makes_one_quorum_of_three_nodes() -> None:
    compose = _merged("compose.yaml", "compose.brokers3.yaml")
    brokers = {name: s for name, s in compose["services"].items() if name.startswith("kafka")}
    assert set(brokers) == {"kafka", "kafka-2", "kafka-3"}
    ids = {name: int(s["environment"]["KAFKA_NODE_ID"]) for name, s in brokers.items()}
    assert sorted(ids.values()) == [1, 2, 3]
    voters = {f"{ids[name]}@{name}:9093" for name in brokers}
    external: list[str] = []
    for name, service in brokers.items():
        env = service["environment"]
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        assert advertised["PLAINTEXT"] == f"{name}:9092", name
        port = advertised["EXTERNAL"].rsplit(":", 1)[1]
        assert env["KAFKA_LISTENERS"].endswith(f"EXTERNAL://:{port}") and any(
            p.endswith(f"{port}:{port}") for p in service["ports"]
        ), name
        external.append(port)
        assert service["image"] == brokers["kafka"]["image"], name
    assert len(set(external)) == 3


def test_every_broker_of_the_three_carries_the_cluster_settings_of_kafka() -> None:
    """A setting added to `kafka` in compose.yaml (a size limit, say) must reach kafka-2 and kafka-3."""
    services = _merged("compose.yaml", "compose.brokers3.yaml")["services"]
    shared = {k: str(v) for k, v in services["kafka"]["environment"].items() if k not in _PER_NODE}
    for name in ("kafka-2", "kafka-3"):
        env = {k: str(v) for k, v in services[name]["environment"].items() if k not in _PER_NODE}
        assert env == shared, name


def test_three_broker_replication_is_the_replicators_own_policy() -> None:
    services = _merged("compose.yaml", "compose.brokers3.yaml")["services"]
    want = replication_for(3)
    env = services["kafka"]["environment"]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_DEFAULT_REPLICATION_FACTOR"):  # fmt: skip
        assert int(env[key]) == want.factor, key
    assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == want.min_insync
    for name in REPLICATOR_SERVICES:
        service = services[name]
        bootstrap = service["environment"]["REPLICATOR_KAFKA_BOOTSTRAP"].split(",")
        assert bootstrap == ["kafka:9092", "kafka-2:9092", "kafka-3:9092"], name
        assert int(service["environment"]["REPLICATOR_KAFKA_REPLICATION_FACTOR"]) == want.factor, name
        assert int(service["environment"]["REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS"]) == want.min_insync, name
        assert service["environment"]["REPLICATOR_NEO4J_URI"] == "bolt://neo4j:7687", name  # the rest kept
        for broker in ("kafka", "kafka-2", "kafka-3"):
            assert service["depends_on"][broker]["condition"] == "service_healthy", (name, broker)


def test_three_broker_volumes_are_declared() -> None:
    compose = _merged("compose.yaml", "compose.brokers3.yaml")
    for name, service in compose["services"].items():
        assert set(service.get("depends_on", {})) <= set(compose["services"]), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".", "$")):
                assert source in compose["volumes"], (name, source)


def test_only_what_users_need_is_published_and_only_on_loopback() -> None:
    services = _compose()["services"]
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert published == {
        "kafka": ["127.0.0.1:9094:9094"],
        "neo4j": ["127.0.0.1:7687:7687"],
        "qdrant": ["127.0.0.1:6333:6333"],
    }


def test_no_built_in_secret_and_none_on_a_command_line() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    assert "replicator-local" not in text  # the development stack's password is the stack's only
    services = _compose()["services"]
    assert services["neo4j"]["environment"]["NEO4J_AUTH"].startswith("neo4j/${NEO4J_PASSWORD:?")
    assert services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY:?")
    for name in REPLICATOR_SERVICES:
        env = services[name]["environment"]
        assert env["REPLICATOR_NEO4J_PASSWORD"].startswith("${NEO4J_PASSWORD:?"), name
        assert env["REPLICATOR_QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?"), name
        assert not any("password" in str(arg).lower() or "api-key" in str(arg) for arg in services[name]["command"])
    assert " -p " not in " ".join(services["neo4j"]["healthcheck"]["test"])


def test_qdrant_is_pinned_to_a_version_reembed_works_with() -> None:
    image = _compose()["services"]["qdrant"]["image"]
    name, _, tag = image.partition(":")
    assert name == "qdrant/qdrant" and tag.startswith("v"), image
    major, minor, _patch = (int(part) for part in tag[1:].split("."))
    assert (major, minor) >= (1, 17), image  # conditional upserts (update_mode), see sinks/qdrant/reembed.py
