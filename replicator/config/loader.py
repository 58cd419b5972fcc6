"""Read ``replicator.yaml`` (or one of the seed guide's files) into a MigrationConfig.

Everything is checked before anything starts: an unknown key (with the closest known one), a wrong
type, a missing variable, an inline secret, an unreadable file each raise ConfigError naming the key
and the fix. Blocking file reads; nothing connects.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from replicator.config import seed
from replicator.config.model import (
    BatchConfig,
    CutoverPolicy,
    KafkaConfig,
    LoadedConfig,
    MigrationConfig,
    Neo4jConfig,
    QdrantConfig,
    Secret,
    SourceOptions,
    StoreConfig,
    ValidationConfig,
)
from replicator.config.references import ALLOW_INLINE_ENV, has_reference, secret
from replicator.config.schema import SCHEMA, Context
from replicator.errors import ConfigError
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import (
    NEO4J_PASSWORD_ENV,
    NEO4J_PASSWORD_FILE_ENV,
    QDRANT_API_KEY_ENV,
    QDRANT_API_KEY_FILE_ENV,
)

T = TypeVar("T")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """The configuration in ``path``: our ``replicator.yaml``, or one of the seed guide's files
    (``migration:`` at the top), taken unchanged. ``environ`` (default: os.environ) fills ``${VAR}``.
    Raises ConfigError naming the key and the fix; the warnings name each key that is accepted but
    not used as written."""
    import os  # noqa: PLC0415 - only for the default

    env = os.environ if environ is None else environ
    data = read_document(path)
    if not seed.is_seed(data):
        _refuse_caxton_yaml(data, path)
        config, warnings = _load(data, path, env, [])
        return LoadedConfig(config=config, warnings=tuple(warnings), source_path=path)
    native, seed_warnings, origins = seed.translate(data, env)
    try:
        config, warnings = _load(native, path, env, seed_warnings)
    except ConfigError as exc:
        raise ConfigError(seed.named_as_in_seed(exc.message, origins), exc.hint) from exc
    warnings = [seed.named_as_in_seed(w, origins) for w in warnings]
    return LoadedConfig(config=config, warnings=tuple(warnings), source_path=path)


def _load(data: Mapping[str, Any], path: Path, env: Mapping[str, str],
          warnings: list[str]) -> tuple[MigrationConfig, list[str]]:  # fmt: skip
    ctx = Context(environ=env, base=path.parent, allow_inline=_allow_inline(data, env))
    if ctx.allow_inline:
        warnings.append("allow_inline_secrets: passwords written in the file are accepted; prefer ${VAR}")
    values = _read_values(data, ctx)
    config = _build(values, data, ctx, warnings)
    if config.validation.performance_comparison:
        warnings.append("validation.performance_comparison: no command compares latency by itself; after the "
                        f"switch run `replicator watch --config {path}` (old vs new reads, alerts)")  # fmt: skip
    return config, warnings


def read_document(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``. Raises ConfigError (unreadable, not YAML, not a mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the configuration {path}: {exc}",
            hint="check the path and its permissions; `replicator config init` writes one",
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", hint="fix the line it names") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping of keys", hint="`replicator config init` writes a starting file")
    return data


def _refuse_caxton_yaml(data: Mapping[str, Any], path: Path) -> None:
    if "memory" in data and isinstance(data["memory"], dict) and "backend" in data["memory"]:
        raise ConfigError(
            f"{path} is Caxton's own configuration (memory.backend), not replicator's",
            hint=f"pass it with --caxton-config {path} (or as store.caxton_config in replicator.yaml); "
            "--config takes replicator.yaml (`replicator config init` writes one)",
        )


def _allow_inline(data: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    from_env = environ.get(ALLOW_INLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    raw = data.get("allow_inline_secrets", False)
    if not isinstance(raw, bool):
        raise ConfigError(f"allow_inline_secrets = {raw!r} is not true or false", hint="allow_inline_secrets: true")
    return from_env or raw


def _unknown(key: str, known: list[str]) -> ConfigError:
    section, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    where = f"in {section}: " if section else ""
    hint = f"did you mean {close[0]}?" if close else f"known keys {where}{', '.join(known)}"
    return ConfigError(f"unknown key {key}", hint=hint + " (`replicator config init` lists every key)")


def _read_values(data: Mapping[str, Any], ctx: Context) -> dict[str, dict[str, Any]]:
    """section -> key -> value read (secrets left raw); only keys present. Raises ConfigError."""
    sections = [s for s in SCHEMA if s]
    out: dict[str, dict[str, Any]] = {"": {}}
    for top, value in data.items():
        name = str(top)
        if name in SCHEMA[""]:
            out[""][name] = SCHEMA[""][name].read(name, value, ctx)
        elif name in SCHEMA:
            section = {} if value is None else value
            if not isinstance(section, dict):
                raise ConfigError(f"{name} must be a section of keys", hint=f"e.g. `{name}: {{key: value}}`")
            out[name] = {}
            for key, item in section.items():
                spec = SCHEMA[name].get(str(key))
                if spec is None:
                    raise _unknown(f"{name}.{key}", list(SCHEMA[name]))
                out[name][str(key)] = spec.read(f"{name}.{key}", item, ctx)
        else:
            raise _unknown(name, [*SCHEMA[""], *sections])
    return out


def _pick(values: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: values[name] for name in names if name in values}


def _secret(key: str, raw: object, ctx: Context, overrides: tuple[str, str], warnings: list[str]) -> Secret | None:
    """The secret at ``key``; None when absent, or when written inline while the environment gives it
    (``overrides``: the variable and its _FILE twin), which takes precedence over the file anyway."""
    if raw is None:
        return None
    inline = isinstance(raw, str) and not has_reference(raw)
    given = [name for name in overrides if ctx.environ.get(name)]
    if inline and given and not ctx.allow_inline:
        warnings.append(f"{key} is written in the file and not used: {given[0]} overrides it; remove it from the file")
        return None
    return secret(key, raw, ctx.environ, ctx.base, allow_inline=ctx.allow_inline)


def _neo4j(values: dict[str, Any], ctx: Context, warnings: list[str]) -> Neo4jConfig:
    graph_keys = [k for k in SCHEMA["neo4j"] if k.endswith(("_label", "_property"))]
    password = _secret("neo4j.password", values.get("password"), ctx, (NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV),
                       warnings)  # fmt: skip
    return Neo4jConfig(
        **_pick(values, "uri", "database", "user", "layout", "group", "metrics_port", "metrics_host"),
        sink=values.get("sink") or "",
        password=password,
        graph=GraphModel(**_pick(values, *graph_keys, "layout")),  # the layout is the graph model's too
        batch=BatchConfig(**_batch(values)),
    )  # fmt: skip


def _qdrant(values: dict[str, Any], ctx: Context, warnings: list[str]) -> QdrantConfig:
    key = _secret("qdrant.api_key", values.get("api_key"), ctx, (QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV), warnings)
    url = values.get("url")
    return QdrantConfig(
        **_pick(values, "url", "collection", "vector_size", "distance", "layout", "group", "encode_batch",
                "metrics_port", "metrics_host"),
        path=values.get("path", None if url else ctx.base / str(SCHEMA["qdrant"]["path"].default)),
        sink=values.get("sink") or "",
        api_key=key,
        batch=BatchConfig(**_batch(values)),
    )  # fmt: skip


def _batch(values: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    if "batch_size" in values:
        out["size"] = values["batch_size"]
    if "batch_age_ms" in values:
        out["age_ms"] = values["batch_age_ms"]
    return out


def _in(section: str, build: Callable[[], T]) -> T:
    """``build()``, its ConfigError naming ``section`` (the owners' messages name flags or settings)."""
    try:
        return build()
    except ConfigError as exc:
        if exc.message.startswith(f"{section}.") or exc.message.startswith(f"{section}:"):
            raise
        raise ConfigError(f"{section}: {exc.message}", exc.hint) from exc


def _build(values: dict[str, dict[str, Any]], data: Mapping[str, Any], ctx: Context,
           warnings: list[str]) -> MigrationConfig:  # fmt: skip
    cut = dict(values.get("cutover", {}))
    renamed = {"max_pause": "max_pause_s", "writer_wait": "writer_wait_s"}
    return MigrationConfig(
        store=_in("store", lambda: StoreConfig(**values.get("store", {}))),
        kafka=_in("kafka", lambda: KafkaConfig(**values.get("kafka", {}))),
        source=_in("source", lambda: SourceOptions(**values.get("source", {}))),
        neo4j=_in("neo4j", lambda: _neo4j(values["neo4j"], ctx, warnings)) if "neo4j" in data else None,
        qdrant=_in("qdrant", lambda: _qdrant(values["qdrant"], ctx, warnings)) if "qdrant" in data else None,
        cutover=_in("cutover", lambda: CutoverPolicy(**{renamed.get(k, k): v for k, v in cut.items()})),
        strategy=values[""].get("strategy", "live"),
        validation=_in("validation", lambda: ValidationConfig(**values.get("validation", {}))),
    )
