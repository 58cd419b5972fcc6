"""``replicator export | import | stats | diff | validate``: the migration tools on the command line.

Exit codes: 0 = done / valid / no difference; 1 = diff found differences or validation failed;
2 = an error (message and hint on stderr, from the root command).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from replicator.clioptions import config_option, graph_model, graph_options, secret_option
from replicator.errors import ConfigError
from replicator.guide.addresses import BACKENDS, parse_address
from replicator.secrets import read_secret
from replicator.sinks.settings import (
    NEO4J_PASSWORD_ENV,
    NEO4J_PASSWORD_FILE_ENV,
    QDRANT_API_KEY_ENV,
    QDRANT_API_KEY_FILE_ENV,
    Neo4jSettings,
    QdrantSettings,
)
from replicator.validation.errors import MigrateError

_db = click.option(
    "--db", "db", type=click.Path(dir_okay=False, path_type=Path), required=True,
    envvar="REPLICATOR_STORE", help="The store (Caxton's memory.db).",
)  # fmt: skip
_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _destination_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Neo4j and Qdrant connection flags (defaults and environment as the sinks read them)."""
    defaults = Neo4jSettings.from_env()
    options = [
        click.option("--neo4j-uri", "--uri", "neo4j_uri", envvar="REPLICATOR_NEO4J_URI", default=defaults.uri,
                     show_default=True),
        click.option("--neo4j-user", "--username", "neo4j_user", envvar="REPLICATOR_NEO4J_USER",
                     default=defaults.user, show_default=True),
        secret_option("--neo4j-password", NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, "Neo4j password"),
        click.option("--neo4j-database", envvar="REPLICATOR_NEO4J_DATABASE", default=defaults.database),
        click.option("--qdrant-url", "--url", "qdrant_url", envvar="REPLICATOR_QDRANT_URL",
                     help="Qdrant server, e.g. http://localhost:6333."),
        click.option("--qdrant-path", "--path", "qdrant_path", envvar="REPLICATOR_QDRANT_PATH",
                     type=click.Path(path_type=Path),
                     help="Qdrant local-mode storage directory (not while a sink holds it)."),
        secret_option("--qdrant-api-key", QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV, "Qdrant API key"),
        click.option("--collection", default=QdrantSettings.collection, show_default=True),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    # The Neo4j sink's graph names: the graph is read under the names the sink wrote it with.
    return graph_options(
        "entity_label", "relation_type_property", "confidence_property", "strength_property", "layout"
    )(command)


def _neo4j(kw: dict[str, Any]) -> Neo4jSettings:
    password = read_secret(kw["neo4j_password"], kw["neo4j_password_file"], "Neo4j password")
    return Neo4jSettings(uri=kw["neo4j_uri"], user=kw["neo4j_user"], password=password, database=kw["neo4j_database"])


def _api_key(kw: dict[str, Any]) -> str | None:
    return read_secret(kw["qdrant_api_key"], kw["qdrant_api_key_file"], "Qdrant API key")


def _qdrant(kw: dict[str, Any], required: bool) -> QdrantSettings | None:
    if kw["qdrant_url"] is None and kw["qdrant_path"] is None:
        if required:
            raise ConfigError("Qdrant needs a location", hint="--qdrant-url http://host:6333 or --qdrant-path DIR")
        return None
    return QdrantSettings(url=kw["qdrant_url"], path=kw["qdrant_path"], collection=kw["collection"],
                          layout=kw.get("layout", "caxton"))  # fmt: skip


@click.command("export")
@config_option()
@_db
@click.option("--output", "-o", default="-", show_default=True, help="File to write, or - for stdout.")
@click.option("--with-embeddings", is_flag=True, help="Include the vectors (base64 of the store's BLOB).")
def export_cmd(db: Path, output: str, with_embeddings: bool) -> None:
    """Export the store as JSON: entities, relations, metadata (counts, version, exported_at, store_id)."""
    from replicator.guide.export import export_document, write_export  # noqa: PLC0415

    doc = export_document(db, with_embeddings=with_embeddings)
    if output == "-":
        write_export(doc, sys.stdout)
        return
    target = Path(output)
    partial = target.with_name(target.name + ".partial")  # never a half-written export under the real name
    with partial.open("w", encoding="utf-8") as out:
        write_export(doc, out)
    partial.replace(target)
    counts = doc["metadata"]["counts"]
    click.echo(f"exported {counts['entities']} entities, {counts['relations']} relations to {target}", err=True)


@click.command("import")
@config_option()
@click.option(
    "--db",
    "--database",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REPLICATOR_STORE",
    help="The store to import into (--backend embedded).",
)
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--backend",
    type=click.Choice(["embedded", "neo4j", "qdrant"]),
    default="embedded",
    show_default=True,
    help="Where to load the export: a store file, or Neo4j / Qdrant in the sinks' layout.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows per destination transaction (neo4j, qdrant); the checkpoint a rerun resumes from.",
)
@click.option("--merge", is_flag=True, help="Add to a non-empty store (identical rows skipped, conflicts refused).")
@_destination_options
def import_cmd(db: Path | None, input_path: Path, backend: str, batch_size: int, merge: bool, **kw: Any) -> None:  # noqa: ANN401 - click passes the flags
    """Import an export into a store (created if new, one transaction), or into Neo4j or Qdrant
    through the sinks' own writers (resumable: a rerun continues after the last batch)."""
    from replicator.guide.importer import import_document, load_document  # noqa: PLC0415

    doc = load_document(input_path)
    if backend != "embedded":
        _import_into(backend, doc, batch_size, kw)
        return
    if db is None:
        raise ConfigError("import --backend embedded needs the store", hint="pass --db ./data/memory.db")
    result = import_document(db, doc, merge=merge)
    made = "created" if result.created_store else "into"
    parts = ", ".join(f"{n} {t}" for t, n in result.inserted.items())
    skipped = sum(result.skipped.values())
    click.echo(f"imported {parts} ({made} {db}){f'; {skipped} identical rows skipped' if skipped else ''}")


def _import_into(backend: str, doc: dict[str, Any], batch_size: int, kw: dict[str, Any]) -> None:
    from replicator.guide.backends import load_export, named  # noqa: PLC0415
    from replicator.sinks.errors import DestinationRefused, DestinationUnavailable  # noqa: PLC0415

    destination, where = _destination(backend, kw)

    def progress(table: str, done: int, total: int) -> None:
        click.echo(f"  {table:<10} {done:>8} / {total}", err=True)

    logging.getLogger("neo4j").setLevel(logging.ERROR)  # the driver's retry chatter; the outcome is reported
    try:
        result = load_export(doc, backend, destination, batch_size=batch_size, progress=progress)
    except (DestinationUnavailable, DestinationRefused) as exc:
        raise named(exc, f"import into {where}", _neo4j(kw) if backend == "neo4j" else None) from exc
    parts = ", ".join(f"{n} {t}" for t, n in result.rows.items())
    resumed = sum(result.resumed.values())
    note = f"; resumed after {resumed} rows an earlier run applied" if resumed else ""
    click.echo(f"imported {parts} into {where} (store {result.store_id}, seq {result.seq}){note}")


def _destination(backend: str, kw: dict[str, Any]) -> tuple[Any, str]:
    """The sink's destination for ``backend`` under the import's position name, and how to name it."""
    from replicator.guide.backends import sink_name  # noqa: PLC0415

    if backend == "neo4j":
        from replicator.sinks.neo4j.destination import Neo4jDestination  # noqa: PLC0415

        model = graph_model(kw)
        where = f"Neo4j {kw['neo4j_uri']} label {model.entity_label}"
        return Neo4jDestination(sink_name(model.namespace), _neo4j(kw), model), where
    from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings  # noqa: PLC0415

    qdrant = _qdrant(kw, required=True)
    assert qdrant is not None
    where = f"Qdrant {qdrant.url or qdrant.path} collection {qdrant.collection}"
    return QdrantDestination(QdrantSinkSettings(qdrant, sink_name(qdrant.collection), _api_key(kw))), where


@click.command("stats")
@config_option()
@click.option("--db", "--database", "db", type=click.Path(dir_okay=False, path_type=Path), envvar="REPLICATOR_STORE")
@click.option(
    "--backend",
    "backends",
    type=click.Choice(BACKENDS),
    multiple=True,
    help="The guide's form: --backend embedded --database PATH, --backend neo4j --uri URI, "
    "--backend qdrant --url URL (repeatable).",
)
@click.option("--neo4j", "with_neo4j", is_flag=True, help="Also count Neo4j (implied by --neo4j-uri).")
@_destination_options
@_json
def stats_cmd(db: Path | None, backends: tuple[str, ...], with_neo4j: bool, as_json: bool, **kw: Any) -> None:  # noqa: ANN401 - click passes the flags
    """Counts and sizes per backend: store file and changelog, Neo4j nodes/relationships, Qdrant points."""
    from replicator.guide import stats  # noqa: PLC0415

    ctx = click.get_current_context()
    neo4j_given = with_neo4j or ctx.get_parameter_source("neo4j_uri") != click.core.ParameterSource.DEFAULT
    if backends:
        if "embedded" in backends and db is None:
            raise ConfigError("stats --backend embedded needs the store", hint="pass --database ./data/memory.db")
        db = db if "embedded" in backends else None
        neo4j_given = "neo4j" in backends
    qdrant = _qdrant(kw, required="qdrant" in backends) if not backends or "qdrant" in backends else None
    if db is None and not neo4j_given and qdrant is None:
        raise ConfigError(
            "stats needs a backend", hint="pass --db PATH, --neo4j-uri URI and/or --qdrant-url/--qdrant-path"
        )
    out: dict[str, dict[str, Any]] = {}
    if db is not None:
        out["store"] = stats.store_stats(db)
    if neo4j_given:
        out["neo4j"] = stats.neo4j_stats(_neo4j(kw), graph_model(kw))
    if qdrant is not None:
        out["qdrant"] = stats.qdrant_stats(qdrant, _api_key(kw))
    click.echo(json.dumps(out, indent=2) if as_json else stats.format_stats(out))


def _diff_inputs(db: Path | None, target: str | None, source: str | None, destination: str | None,
                 kw: dict[str, Any]) -> tuple[Path, str]:  # fmt: skip
    """The store and the destination of ``diff`` from --db/--target or the guide's --source/--destination
    addresses (which fill in the destination's flags in ``kw``). Raises ConfigError."""
    if source is not None:
        address = parse_address(source, "--source")
        if address.backend != "embedded":
            raise ConfigError(f"--source {source!r}: diff compares a store with a destination",
                              hint="--source embedded:./data/memory.db")  # fmt: skip
        if db is not None and db != address.path:
            raise ConfigError(f"--db {db} and --source {source!r} name two stores", hint="pass one of them")
        db = address.path
    if destination is not None:
        address = parse_address(destination, "--destination")
        if address.backend == "embedded" or (target is not None and target != address.backend):
            raise ConfigError(
                f"--destination {destination!r} is not a {target or 'Neo4j or Qdrant'} address",
                hint="--destination neo4j:bolt://localhost:7687 or qdrant:http://localhost:6333",
            )
        target = address.backend
        if target == "neo4j":
            kw["neo4j_uri"] = address.location
        else:
            kw["qdrant_url"], kw["qdrant_path"] = (address.location, None) if address.is_url else (None, address.path)
    if db is None:
        raise ConfigError("diff needs the store", hint="pass --source embedded:./data/memory.db (or --db)")
    if target is None:
        raise ConfigError("diff needs a destination", hint="pass --destination neo4j:bolt://localhost:7687")
    return db, target


@click.command("diff")
@config_option()
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REPLICATOR_STORE",
    help="The store (Caxton's memory.db); or --source.",
)
@click.option("--target", type=click.Choice(["neo4j", "qdrant"]), help="The destination; or --destination.")
@click.option("--source", help="The guide's form of the store: embedded:./data/memory.db.")
@click.option(
    "--destination",
    help="The guide's form of the destination: neo4j:bolt://HOST:7687, "
    "qdrant:http://HOST:6333 or qdrant:DIR (local mode).",
)
@_destination_options
@_json
def diff_cmd(
    db: Path | None,
    target: str | None,
    source: str | None,
    destination: str | None,
    as_json: bool,
    **kw: Any,  # noqa: ANN401 - click passes the flags
) -> None:
    """Every key that is missing, extra or different between the store and a destination. Exit 1 if any."""
    from replicator.sinks.neo4j.reader import GraphReader  # noqa: PLC0415
    from replicator.sinks.qdrant.reader import QdrantReader  # noqa: PLC0415
    from replicator.validation.diff import compare  # noqa: PLC0415
    from replicator.validation.store import StoreReader  # noqa: PLC0415

    db, target = _diff_inputs(db, target, source, destination, kw)
    with StoreReader(db) as store, store.transaction():
        mine = store.read(None, embeddings=target == "qdrant")
    foreign: list[str] = []  # what an MCP client wrote beside the sink (mcp layout; docs/layouts.md)
    if target == "neo4j":
        with GraphReader.connect(_neo4j(kw), graph_model(kw)) as graph:
            graph.check_layout()
            theirs = graph.read(None)
            foreign = graph.foreign_writes()
    else:
        settings = _qdrant(kw, required=True)
        assert settings is not None
        with QdrantReader(settings, api_key=_api_key(kw)) as qdrant:
            theirs = qdrant.read(None)
    found = compare(target, mine, theirs, relations=target == "neo4j", embeddings=target == "qdrant")
    if as_json:
        summary = {p: sum(m.problem == p for m in found) for p in ("missing", "extra", "different")}
        report = {"target": target, "summary": summary, "differences": [m.to_dict() for m in found], "foreign": foreign}
        click.echo(json.dumps(report, indent=2))
    else:
        for line in [*(str(m) for m in found), *foreign]:
            click.echo(line)
        click.echo(f"{len(found) + len(foreign)} differences between the store and {target}")
    if found or foreign:
        sys.exit(1)


@click.command("validate")
@config_option()
@_db
@click.option("--target", type=click.Choice(["neo4j", "qdrant", "hybrid"]), required=True)
@click.option("--sample", type=int, default=100, show_default=True, help="Entities compared field by field.")
@click.option("--full", is_flag=True, help="Compare every entity and relation, not a sample.")
@click.option("--fast", is_flag=True, help="Counts and a small sample only (what cutover runs under the fence).")
@click.option("--no-search", is_flag=True, help="Skip the search-consistency queries (no model load).")
@click.option("--top-k", type=int, default=10, show_default=True)
@click.option("--query-threshold", type=float, default=0.8, show_default=True, help="Top-k overlap per query.")
@click.option("--search-threshold", type=float, default=0.95, show_default=True, help="Share of consistent queries.")
@click.option("--seed", type=int, help="Seed of the random sample (repeatable runs).")
@click.option("--repair", is_flag=True, help="Re-emit every mismatched key through the changelog.")
@_destination_options
@_json
def validate_cmd(
    db: Path, target: str, sample: int, full: bool, fast: bool, no_search: bool, top_k: int,
    query_threshold: float, search_threshold: float, seed: int | None, repair: bool, as_json: bool,
    **kw: Any,  # noqa: ANN401 - click passes the flags
) -> None:  # fmt: skip
    """Counts, a random sample field by field, search consistency. Exit 1 when invalid."""
    from replicator.validation.validate import ValidationOptions, validate  # noqa: PLC0415

    if full and fast:
        raise ConfigError("--full and --fast contradict each other", hint="pick one")
    options = ValidationOptions(
        sample=sample, full=full, fast=fast, search=not no_search, top_k=top_k,
        query_threshold=query_threshold, search_threshold=search_threshold, seed=seed,
    )  # fmt: skip
    qdrant = _qdrant(kw, required=target != "neo4j")  # before graph_model() takes the layout out of kw
    report = validate(
        db, [target], neo4j=_neo4j(kw), graph_model=graph_model(kw),
        qdrant=qdrant, qdrant_api_key=_api_key(kw), options=options,
    )  # fmt: skip
    repaired: dict[str, Any] | None = None
    if repair and report.mismatches:
        repaired = _repair(db, report.mismatches)
    if as_json:
        out = report.to_dict()
        if repaired is not None:
            out["repair"] = repaired
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(report.to_text())
        if repaired is not None:
            click.echo(f"repair: {json.dumps(repaired)}")
    if not report.ok:
        sys.exit(1)


def _repair(db: Path, mismatches: list[Any]) -> dict[str, Any]:
    from replicator.validation.repair import apply_repair, plan_repair  # noqa: PLC0415
    from replicator.validation.store import StoreReader  # noqa: PLC0415

    with StoreReader(db) as store:
        plan = plan_repair(mismatches, store.embedding_ids())
    return {"plan": plan.to_dict(), "emitted": apply_repair(db, plan)}


def register(cli_group: click.Group) -> None:
    """Add export, import, stats, diff and validate to the root command."""
    for command in (export_cmd, import_cmd, stats_cmd, diff_cmd, validate_cmd):
        cli_group.add_command(command)


__all__ = ["MigrateError", "register"]
