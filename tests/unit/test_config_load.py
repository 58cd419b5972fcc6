"""replicator.yaml and the seed guide's files: loaded into one MigrationConfig, or refused naming the
key and the fix (docs/config.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from replicator.config import ConfigError, load_config
from replicator.config.seed import SEED_KEYS, seed_keys_of
from replicator.cutover.config import sample_config
from replicator.sinks.neo4j.model import GraphModel

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
TARGETS = {"migration-config.yaml": "neo4j", "neo4j-migration.yaml": "neo4j", "qdrant-migration.yaml": "qdrant",
           "hybrid-migration.yaml": "hybrid"}  # fmt: skip
SEED_FILES = tuple(TARGETS)
#: The guide's own files write the password inline ("password"); the environment's overrides it.
ENV = {"NEO4J_PASSWORD": "from-env", "REPLICATOR_NEO4J_PASSWORD": "replicator-local"}


def _write(tmp_path: Path, text: str, name: str = "replicator.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", SEED_FILES)
def test_each_seed_file_loads_unchanged(name: str) -> None:
    loaded = load_config(SEED / name, ENV)
    assert loaded.config.target == TARGETS[name]


def test_seed_values_are_mapped_to_our_settings() -> None:
    neo4j = load_config(SEED / "neo4j-migration.yaml", ENV).config.neo4j
    assert neo4j is not None
    assert (neo4j.uri, neo4j.user, neo4j.database) == ("bolt://localhost:7687", "caxton", "caxton_memory")
    assert neo4j.graph.relation_type_property == "type"
    config = load_config(SEED / "migration-config.yaml", ENV).config
    assert config.strategy == "blue-green"
    assert config.neo4j is not None and config.neo4j.password is not None
    assert config.neo4j.password.value == "from-env"
    assert config.validation.sample_queries == 100
    assert config.store.path == SEED / "data" / "memory.db"
    qdrant = load_config(SEED / "qdrant-migration.yaml", ENV).config.qdrant
    assert qdrant is not None and (qdrant.url, qdrant.collection, qdrant.batch.size) == (
        "http://localhost:6333",
        "caxton_embeddings",
        1000,
    )


def test_every_key_of_every_seed_file_has_an_entry_in_the_mapping_table() -> None:
    missing = []
    for path in sorted(SEED.glob("*.yaml")):
        for key in seed_keys_of(yaml.safe_load(path.read_text())):
            if key not in SEED_KEYS:
                missing.append(f"{path.name}: {key}")
    assert missing == []


def test_the_troubleshooting_keys_are_honoured_or_warned_about_by_name(tmp_path: Path) -> None:
    base = yaml.safe_load((SEED / "hybrid-migration.yaml").read_text())
    base["migration"].update(yaml.safe_load((SEED / "troubleshooting-batch.yaml").read_text())["migration"])
    loaded = load_config(_write(tmp_path, yaml.safe_dump(base)), ENV)
    assert loaded.config.neo4j is not None and loaded.config.neo4j.batch.size == 100
    assert loaded.config.qdrant is not None and loaded.config.qdrant.batch.size == 100
    assert any(w.startswith("migration.parallel_workers:") for w in loaded.warnings)
    assert any(w.startswith("migration.memory_limit_mb:") for w in loaded.warnings)


def test_an_inline_password_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "neo4j:\n  password: hunter2\n")
    with pytest.raises(ConfigError, match=r"neo4j.password is written in the file") as err:
        load_config(path, {})
    assert "${VAR}" in err.value.hint and "hunter2" not in str(err.value)
    allowed = load_config(_write(tmp_path, "allow_inline_secrets: true\nneo4j:\n  password: hunter2\n"), {})
    assert allowed.config.neo4j is not None and allowed.config.neo4j.password is not None
    assert any("allow_inline_secrets" in w for w in allowed.warnings)


def test_a_missing_variable_is_an_error_naming_the_key_and_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "neo4j:\n  password: ${NEO4J_PASSWORD}\n")
    with pytest.raises(ConfigError, match=r"neo4j.password: the variable NEO4J_PASSWORD is not set"):
        load_config(path, {})
    default = load_config(_write(tmp_path, "kafka:\n  bootstrap: ${KAFKA:-10.0.0.1:9092}\nqdrant: {}\n"), {})
    assert default.config.kafka.bootstrap == "10.0.0.1:9092"


def test_a_secret_from_a_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    loaded = load_config(_write(tmp_path, "neo4j:\n  password: {file: pw}\n"), {})
    assert loaded.config.neo4j is not None and loaded.config.neo4j.password is not None
    assert loaded.config.neo4j.password.value == "s3cret"
    assert "s3cret" not in repr(loaded.config) and "s3cret" not in loaded.config.neo4j.password.masked


def test_an_unknown_key_says_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key neo4j.entity_lable") as err:
        load_config(_write(tmp_path, "neo4j:\n  entity_lable: Person\n"), {})
    assert "did you mean entity_label?" in err.value.hint
    with pytest.raises(ConfigError, match=r"unknown key migration.destination.config.usename"):
        load_config(_write(tmp_path, "migration:\n  destination:\n    backend: neo4j\n    config: {usename: x}\n"), {})


def test_a_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"neo4j.batch_size = 'many' is not a whole number"):
        load_config(_write(tmp_path, "neo4j:\n  batch_size: many\n"), {})


def test_caxton_yaml_is_refused_naming_caxton_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Caxton's own configuration") as err:
        load_config(_write(tmp_path, sample_config(), "caxton.yaml"), {})
    assert "--caxton-config" in err.value.hint


def test_defaults_are_the_owners(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "neo4j: {}\n"), {}).config
    assert config.neo4j is not None and config.neo4j.graph == GraphModel()
    assert config.neo4j.sink == config.neo4j.group == "replicator-sink-neo4j"
    assert config.target == "neo4j" and config.strategy == "live"


def test_docs_config_md_has_a_row_for_every_seed_key() -> None:
    """docs/config.md's table: a row's first cell is a full key, then leaves under the same parent."""
    documented = set()
    for line in (SEED.parents[2] / "docs" / "config.md").read_text().splitlines():
        if line.startswith("| `migration."):
            names = re.findall(r"`([^`]+)`", line.split("|")[1])
            parent = names[0].rpartition(".")[0]
            documented |= {names[0], *(f"{parent}.{leaf}" for leaf in names[1:])}
    keys = {key for key, spec in SEED_KEYS.items() if spec.action != "section"}
    assert documented == keys


def test_a_seed_files_inline_password_is_refused_or_unused_and_named_by_the_seeds_key() -> None:
    with pytest.raises(ConfigError, match=r"migration.destination.config.password \(neo4j.password\) is written"):
        load_config(SEED / "neo4j-migration.yaml", {})
    loaded = load_config(SEED / "neo4j-migration.yaml", {"REPLICATOR_NEO4J_PASSWORD": "from-env"})
    assert loaded.config.neo4j is not None and loaded.config.neo4j.password is None  # the variable gives it
    assert any(w.startswith("migration.destination.config.password (neo4j.password) is written in the file and not "
                            "used: REPLICATOR_NEO4J_PASSWORD overrides it") for w in loaded.warnings)  # fmt: skip


def test_a_seed_value_we_do_not_do_is_refused_by_its_key(tmp_path: Path) -> None:
    text = (SEED / "hybrid-migration.yaml").read_text().replace('relations: "neo4j"', 'relations: "both"')
    with pytest.raises(ConfigError, match=r"migration.distribution.relations = 'both' is not supported"):
        load_config(_write(tmp_path, text), ENV)
    text = (SEED / "qdrant-migration.yaml").read_text().replace("vector_size: 384", "vector_size: 768")
    with pytest.raises(ConfigError, match=r"migration.destination.config.vector_size \(qdrant.vector_size\) 768"):
        load_config(_write(tmp_path, text), ENV)


def test_the_environment_overrides_the_file_for_code_without_click(tmp_path: Path) -> None:
    from replicator.config.environment import with_environment  # noqa: PLC0415

    (tmp_path / "pw").write_text("pw-from-file\n")
    config = load_config(_write(tmp_path, "neo4j: {password: '${P}'}\nqdrant: {path: q}\n"), {"P": "pw-in-config"})
    env = {"REPLICATOR_TOPIC_PREFIX": "env.prefix", "REPLICATOR_NEO4J_PASSWORD_FILE": str(tmp_path / "pw"),
           "REPLICATOR_QDRANT_URL": "http://q:6333"}  # fmt: skip
    got, overridden = with_environment(config.config, env)
    assert got.kafka.topic_prefix == "env.prefix"
    assert got.neo4j is not None and got.neo4j.password is not None and got.neo4j.password.value == "pw-from-file"
    assert got.qdrant is not None and (got.qdrant.url, got.qdrant.path) == ("http://q:6333", None)
    assert "REPLICATOR_TOPIC_PREFIX -> kafka.topic_prefix" in overridden
    assert "REPLICATOR_NEO4J_PASSWORD_FILE -> neo4j.password" in overridden
    only_source = load_config(_write(tmp_path, "source: {batch_rows: 40}\n", "source.yaml"), {}).config
    assert with_environment(only_source, {"REPLICATOR_NEO4J_URI": "bolt://x:7687"})[0].neo4j is None


def test_the_neo4j_layout_is_the_graph_models_layout(tmp_path: Path) -> None:
    """Whoever builds a GraphModel from the file (migrate, import) reads and writes the file's layout."""
    loaded = load_config(_write(tmp_path, "neo4j:\n  layout: mcp\n"), {})
    assert loaded.config.neo4j is not None
    assert (loaded.config.neo4j.layout, loaded.config.neo4j.graph.layout) == ("mcp", "mcp")
