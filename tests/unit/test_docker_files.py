"""docker/ cannot run here (no engine): check that the compose file and Dockerfile hang together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
