"""``replicator assess`` and ``replicator tune``: the seed guide's lifecycle before and after the move.

Exit codes: 0 = done; 2 = an error (message and hint on stderr, from the root command).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from replicator.clioptions import config_option
from replicator.errors import ConfigError, Fatal
from replicator.lifecycle.decide import NEEDS, SEARCH_LINE_MS, matrix_rows

_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_target = click.option(
    "--target", type=click.Choice(["neo4j", "qdrant", "hybrid"]), default="hybrid", show_default=True,
    help="The new backend: the destinations to read.",
)  # fmt: skip
_db = click.option(
    "--db", "db", type=click.Path(dir_okay=False, path_type=Path), required=True,
    envvar="REPLICATOR_STORE", help="The store (Caxton's memory.db).",
)  # fmt: skip


@click.command("assess")
@config_option()
@_db
@click.option(
    "--queries",
    default=20,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Search queries to time (texts of the store's own entities); 0 skips the search and the model.",
)
@click.option("--k", "k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Neighbours per query.")
@click.option(
    "--need",
    "needs",
    multiple=True,
    type=click.Choice(list(NEEDS)),
    help="A requirement the store cannot show (the guide's matrix rows); repeat for several.",
)
@click.option(
    "--history",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON-lines file of earlier assessments: growth is shown since the newest, and this one is added.",
)
@_json
def assess_cmd(db: Path, queries: int, k: int, needs: tuple[str, ...], history: Path | None, as_json: bool) -> None:
    """When to migrate: the guide's indicators measured on the live store (read-only), its decision
    matrix filled in, and a recommendation with reasons."""
    from replicator.lifecycle import assess  # noqa: PLC0415 - numpy only when assessing

    encode = _encoder() if queries else None
    previous = assess.last_assessment(history) if history is not None else None
    result = assess.assess(db, encode, queries=queries, k=k, needs=needs, previous=previous)
    if history is not None:
        assess.keep(history, result)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_assessment(result.to_dict()))


def _encoder() -> Any:  # noqa: ANN401 - a callable text -> vector
    from replicator.embedding import embed, load_model  # noqa: PLC0415 - torch only when searching

    model = load_model()
    return lambda text: embed(model, [text])[0]


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB"


def format_assessment(data: dict[str, Any]) -> str:
    """The assessment as an operator reads it. Pure."""
    when = datetime.fromtimestamp(data["at_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    status = {i["name"]: i["status"] for i in data["indicators"]}
    counts = data["counts"]
    lines = [
        f"Store {data['store']} ({when})",
        f"  entities          {counts['entities']:>12,} of 100,000   {status['entities']}"
        f"   ({counts['relations']:,} relations, {counts['embeddings']:,} embeddings)",
        f"  file              {_gb(data['file_bytes']):>12} of 10 GB    {status['file_bytes']}",
        f"  memory (estimate) {_gb(data['memory_bytes_estimate']):>12} of 2 GB     {status['memory_bytes_estimate']}"
        "   (file + vectors as float32 + model)",
    ]
    search = data["search"]
    if search is None:
        lines.append("  search            not measured (--queries 0)")
    else:
        s = search
        lines.append(
            f"  search p50 / p95  {s['p50_ms']:>6.1f} / {s['p95_ms']:.1f} ms (line {SEARCH_LINE_MS:.0f} ms)   "
            f"{status['search_p50_ms']}   (embed {s['encode_p50_ms']:.1f} ms + scan {s['scan_p50_ms']:.1f} ms "
            f"of {s['vectors']:,} vectors; {s['queries']} queries, k={s['k']})"
        )
    lines += _growth_lines(data["growth"])
    lines += ["", "The guide's decision matrix, for this store:", *_matrix_lines(data["verdict"])]
    lines += ["", f"Recommendation: {data['verdict']['backend']}", *(f"  - {r}" for r in data["verdict"]["reasons"])]
    return "\n".join(lines)


def _growth_lines(growth: dict[str, Any]) -> list[str]:
    if not growth:
        return []
    since = datetime.fromtimestamp(growth["since_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    line = (
        f"  growth since {since}: {growth['entities']:+,} entities ({growth['entities_per_day']:+,.1f}/day), "
        f"{growth['relations']:+,} relations, {growth['file_bytes'] / 1e6:+,.1f} MB"
    )
    if "days_to_entity_limit" in growth:
        line += f"; 100K entities in about {growth['days_to_entity_limit']:,.0f} days at this rate"
    return [line]


def _matrix_lines(verdict: dict[str, Any]) -> list[str]:
    from replicator.lifecycle.decide import Verdict  # noqa: PLC0415

    rows = matrix_rows(Verdict(verdict["backend"], tuple(verdict["reasons"]), verdict["applies"]))
    out = ["| Requirement | Embedded | Neo4j | Qdrant | Hybrid | This store |", "|---|---|---|---|---|---|"]
    out += [f"| {row} | {' | '.join(marks)} | {why or '-'} |" for row, marks, why in rows]
    return out


@click.command("tune")
@config_option()
@click.option("--dry-run", is_flag=True, help="Show the statements; change nothing.")
@click.option("--neo4j/--no-neo4j", "with_neo4j", default=True, show_default=True, help="Tune the graph.")
@_json
def tune_cmd(dry_run: bool, with_neo4j: bool, as_json: bool, **kw: Any) -> None:  # noqa: ANN401
    """After the switch: the guide's indexes on Neo4j (entity name, type, confidence, relationship
    strength, name + type) and Qdrant payload indexes, then fresh statistics. Idempotent, safe on a
    live database."""
    from replicator.guide.cli import _api_key, _neo4j, _qdrant  # noqa: PLC0415
    from replicator.lifecycle import tune  # noqa: PLC0415
    from replicator.sinks.neo4j.model import GraphModel  # noqa: PLC0415

    qdrant = _qdrant(kw, required=False)
    if not with_neo4j and qdrant is None:
        raise ConfigError("tune has nothing to do", hint="drop --no-neo4j, or pass --qdrant-url/--qdrant-path")
    out: dict[str, list[dict[str, str]]] = {}
    text: list[str] = []
    if with_neo4j:
        model = GraphModel(
            entity_label=kw["entity_label"], relation_type_property=kw["relation_type_property"],
            confidence_property=kw["confidence_property"], strength_property=kw["strength_property"],
        )  # fmt: skip
        steps = _neo4j_steps(_neo4j(kw), model, dry_run)
        out["neo4j"] = [s.to_dict() for s in steps]
        text.append(tune.format_steps(f"Neo4j ({kw['neo4j_uri']}, label {model.entity_label})", steps))
    if qdrant is not None:
        from replicator.sinks.qdrant.reader import open_qdrant  # noqa: PLC0415

        client = open_qdrant(qdrant, _api_key(kw))
        try:
            steps = tune.tune_qdrant(client, qdrant.collection, dry_run=dry_run, local=qdrant.path is not None)
        finally:
            client.close()
        out["qdrant"] = [s.to_dict() for s in steps]
        text.append(tune.format_steps(f"Qdrant ({qdrant.url or qdrant.path}, collection {qdrant.collection})", steps))
    click.echo(json.dumps(out, indent=2) if as_json else "\n\n".join(text))


def _neo4j_steps(settings: Any, model: Any, dry_run: bool) -> Sequence[Any]:  # noqa: ANN401
    import neo4j  # noqa: PLC0415

    from replicator.lifecycle.tune import tune_neo4j  # noqa: PLC0415
    from replicator.sinks.neo4j.faults import describe  # noqa: PLC0415

    driver = neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF")
    try:
        return tune_neo4j(driver, settings.database, model, dry_run=dry_run)
    except Exception as exc:
        said, _ = describe(exc, settings)
        raise Fatal(
            f"tune: {said}",
            hint="check --neo4j-uri, the user and its password (REPLICATOR_NEO4J_PASSWORD or a file), and that the "
            "user may create indexes (an admin, or the INDEX MANAGEMENT privilege)",
        ) from exc
    finally:
        driver.close()


@click.command("check")
@config_option()
@_db
@click.option("--backup", type=click.Path(dir_okay=False, path_type=Path), help="The export taken before starting.")
@_target
@click.option(
    "--bootstrap-servers",
    envvar="REPLICATOR_KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka [default: REPLICATOR_KAFKA_BOOTSTRAP, else the local stack's].",
)
@_json
def check_cmd(db: Path, backup: Path | None, target: str, bootstrap_servers: str | None, as_json: bool,
              **kw: Any) -> None:  # fmt: skip  # noqa: ANN401
    """Ready to go: the guide's pre-migration checklist as checks that run (schema, backup, disk,
    destinations and their versions, Kafka, capture's cost to the writer). Exit 1 if one fails."""
    from dataclasses import replace  # noqa: PLC0415

    from replicator.guide.cli import _api_key, _neo4j, _qdrant  # noqa: PLC0415
    from replicator.lifecycle import check  # noqa: PLC0415
    from replicator.transport.settings import KafkaSettings  # noqa: PLC0415

    kafka = KafkaSettings.from_env()
    if bootstrap_servers:
        kafka = replace(kafka, bootstrap_servers=bootstrap_servers)
    checks = [check.check_schema(db), check.check_backup(db, backup), check.check_disk(db, backup)]
    if target in ("neo4j", "hybrid"):
        checks.append(check.check_neo4j(_neo4j(kw)))
    if target in ("qdrant", "hybrid"):
        qdrant = _qdrant(kw, required=True)
        checks.append(check.check_qdrant(qdrant, _api_key(kw)))
    checks += [check.check_kafka(kafka), check.check_overhead(db)]
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        click.echo(check.format_checks(checks))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)


@click.command("watch")
@config_option()
@_db
@_target
@click.option(
    "--duration",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1, 7 * 86_400),
    help="Seconds to watch (Ctrl-C ends it earlier, with the report).",
)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds between rounds (each round: every read on every backend).",
)
@click.option(
    "--samples",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Entities of the store to read by name, in turn.",
)
@click.option(
    "--search/--no-search",
    default=True,
    show_default=True,
    help="Also compare semantic search (loads the packaged model).",
)
@click.option("--metrics-port", type=int, default=None, help="Also serve Prometheus /metrics here while watching.")
@_json
def watch_cmd(db: Path, target: str, duration: float, interval: float, samples: int, search: bool,
              metrics_port: int | None, as_json: bool, **kw: Any) -> None:  # fmt: skip  # noqa: ANN401
    """After the switch: the same reads against the old store and the new backend, latency and
    errors against the guide's lines (1 % errors, 100 ms mean). Exit 1 on an alert."""
    from replicator.lifecycle.watching import run_watch  # noqa: PLC0415

    report = run_watch(db, target, kw, duration_s=duration, interval_s=interval, count=samples, search=search,
                       metrics_port=metrics_port)  # fmt: skip
    data = report.to_dict()
    click.echo(json.dumps(data, indent=2) if as_json else format_watch(data))
    if data["alerts"]:
        raise SystemExit(1)


def format_watch(data: dict[str, Any]) -> str:
    """The monitor's report as an operator reads it. Pure."""
    lines = [f"{data['rounds']} rounds in {data['seconds']:.1f} s", "backend  read        reads  errors   mean ms"
             "   p95 ms  slow  differs"]  # fmt: skip
    for r in data["reads"]:
        mean = "-" if r["mean_ms"] is None else f"{r['mean_ms']:.1f}"
        p95 = "-" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}"
        lines.append(f"{r['backend']:<8} {r['read']:<10} {r['reads']:>6} {r['errors']:>7} {mean:>9} {p95:>8} "
                     f"{r['slow']:>5} {r['differs_from_store']:>8}")  # fmt: skip
    lines += [f"ALERT {a}" for a in data["alerts"]] or ["within the guide's lines (errors <= 1 %, mean <= 100 ms)"]
    return "\n".join(lines)


def register(cli_group: click.Group) -> None:
    from replicator.guide.cli import _destination_options  # noqa: PLC0415

    cli_group.add_command(assess_cmd)
    cli_group.add_command(_destination_options(check_cmd))  # type: ignore[arg-type]
    cli_group.add_command(_destination_options(tune_cmd))  # type: ignore[arg-type]
    cli_group.add_command(_destination_options(watch_cmd))  # type: ignore[arg-type]
