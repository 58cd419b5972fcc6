"""The schemas, POMs and launcher ship inside the package, and the embedding text follows STORE.md."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from replicator.embedding import entity_text

REPO = Path(__file__).resolve().parents[2]


def test_package_schemas_are_the_top_level_schemas() -> None:
    link = REPO / "replicator" / "schemas"
    assert link.is_symlink() and os.readlink(link) == "../schemas"
    shipped = sorted(p.name for p in (resources.files("replicator") / "schemas").iterdir() if p.name.endswith(".avsc"))
    assert shipped == sorted(p.name for p in (REPO / "schemas").glob("*.avsc"))


def test_every_schema_is_json_with_a_doc() -> None:
    for path in (REPO / "schemas").glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert path.name == f"{schema['namespace']}.{schema['name']}.avsc"
        assert schema.get("doc"), path.name


def test_stack_resources_ship_with_the_package() -> None:
    jvm = resources.files("replicator.stack") / "jvm"
    assert {"kafka.pom.xml", "neo4j.pom.xml", "Neo4jLauncher.java"} <= {p.name for p in jvm.iterdir()}


def test_entity_text_is_what_the_store_embeds() -> None:
    assert entity_text("Ada", "person", ["wrote", "the first program"]) == "Ada person wrote the first program"
    assert entity_text("X", "concept", []) == "X concept "


def test_the_mcp_servers_are_test_only_dependencies() -> None:
    import tomllib  # noqa: PLC0415

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    assert not [d for d in declared if d.lower().startswith(("mcp", "fastmcp"))]
    for env in ("neo4j-memory", "server-qdrant"):  # pinned, each in its own lock (.ci/install)
        lock = (REPO / ".ci" / "mcp" / f"{env}.txt").read_text().splitlines()
        assert f"mcp-{env}==" in "\n".join(lock) and all("==" in line for line in lock if line.strip())


def test_the_changelog_plugin_sources_ship_with_the_package() -> None:
    jvm = resources.files("replicator.reverse") / "jvm"
    service = jvm / "META-INF" / "services" / "org.neo4j.kernel.extension.ExtensionFactory"
    assert service.read_text().strip() == "dev.replicator.reverse.ChangelogExtensionFactory"
    sources = jvm / "dev" / "replicator" / "reverse"
    assert {"ChangelogExtensionFactory.java", "ChangelogListener.java"} <= {p.name for p in sources.iterdir()}
