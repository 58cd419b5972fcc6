"""``replicator sink <destination>``: run a sink. Settings come from flags, then environment
(``REPLICATOR_...``), then ``--config replicator.yaml`` (its section of this destination), then
defaults; they are frozen and validated before anything connects.

Add a destination by writing one more command in this group (``sink qdrant`` goes next to
``sink neo4j``): build its Destination and hand it to ``run_sink`` with the shared runner options.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from replicator.clioptions import CONFIG_META, GRAPH_FLAGS, config_option, graph_model, graph_options, secret_option
from replicator.secrets import read_secret
from replicator.sinks.qdrant.cli import connection_options, reembed_command, sink_settings
from replicator.sinks.qdrant.embedder import DEFAULT_ENCODE_BATCH
from replicator.sinks.runner_settings import (
    DEFAULT_METRICS_HOST,
    DEFAULT_RECHECK_S,
    SinkRunnerSettings,
)
from replicator.sinks.settings import NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, Neo4jSettings
from replicator.transport.settings import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES_ENV,
    KafkaSettings,
    ReplicationEnv,
    parse_size,
    replication_from_env,
)
from replicator.transport.topics import DEFAULT_PREFIX

if TYPE_CHECKING:
    from replicator.sinks.runner import Destination

F = TypeVar("F", bound=Callable[..., Any])

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k != "message"})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def runner_options(f: F) -> F:
    """Options every sink shares (consuming, batching, metrics)."""
    options = [
        click.option("--bootstrap-servers", envvar="REPLICATOR_KAFKA_BOOTSTRAP", default=DEFAULT_BOOTSTRAP,
                     show_default=True),
        click.option("--topic-prefix", envvar="REPLICATOR_TOPIC_PREFIX", default=DEFAULT_PREFIX, show_default=True),
        click.option("--group", envvar="REPLICATOR_SINK_GROUP", default=None,
                     help="Consumer group of this sink [required to run it]."),
        click.option("--sink-name", envvar="REPLICATOR_SINK_NAME", default="",
                     help="Key of the stored position [default: the group]."),
        click.option("--batch-size", type=int, default=1000, show_default=True),
        click.option("--batch-age-ms", type=int, default=200, show_default=True),
        click.option("--session-timeout-ms", type=int, default=10_000, show_default=True),
        click.option("--max-message-bytes", envvar=MAX_MESSAGE_BYTES_ENV, default=str(DEFAULT_MAX_MESSAGE_BYTES),
                     show_default=True, help="Kafka's record limit, the same for the whole pipeline (e.g. 32MiB)."),
        click.option("--schema-registry", envvar="REPLICATOR_SCHEMA_REGISTRY", default=None,
                     help="Schema Registry URL, for values the source framed with it (Confluent wire format)."),
        click.option("--metrics-port", envvar="REPLICATOR_METRICS_PORT", type=int, default=None,
                     help="Serve /metrics, /healthz and /position here (0 = any free port)."),
        click.option("--metrics-host", envvar="REPLICATOR_METRICS_HOST", default=DEFAULT_METRICS_HOST,
                     show_default=True, help="Address the endpoint binds (0.0.0.0: every interface)."),
        click.option("--recheck-s", envvar="REPLICATOR_SINK_RECHECK_S", type=float, default=DEFAULT_RECHECK_S,
                     show_default=True,
                     help="While stopped on a fatal error (credentials, missing database or collection, model), "
                          "re-check the destination this often; it resumes by itself once the cause is fixed."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _replication() -> ReplicationEnv:
    """The topics' replication: the variables, else ``--config``'s kafka section (as the source reads it)."""
    found = replication_from_env()
    ctx = click.get_current_context(silent=True)  # None: called as a function, not by click
    loaded = ctx.meta.get(CONFIG_META) if ctx is not None else None
    if loaded is not None:
        kafka = loaded.config.kafka
        for key in ("replication_factor", "min_insync_replicas"):
            if found[key] is None:
                found[key] = getattr(kafka, key)
    return found


def runner_settings(opts: dict[str, Any], tables: tuple[str, ...]) -> SinkRunnerSettings:
    if not opts.get("group"):
        raise click.UsageError("Missing option '--group' (the sink's consumer group).")
    return SinkRunnerSettings(
        group=opts["group"],
        kafka=KafkaSettings(
            bootstrap_servers=opts["bootstrap_servers"],
            client_id=f"replicator-sink-{opts['group']}",
            max_message_bytes=parse_size(opts["max_message_bytes"], "--max-message-bytes"),
            **_replication(),  # for the dead-letter topic, as the source's topics get them
        ),
        topic_prefix=opts["topic_prefix"],
        tables=tables,
        sink=opts["sink_name"],
        batch_max_events=opts["batch_size"],
        batch_max_age_ms=opts["batch_age_ms"],
        session_timeout_ms=opts["session_timeout_ms"],
        metrics_port=opts["metrics_port"],
        metrics_host=opts["metrics_host"],
        schema_registry=opts["schema_registry"],
        recheck_s=opts["recheck_s"],
    )


def run_sink(settings: SinkRunnerSettings, destination: Destination) -> None:
    """Run until SIGTERM/SIGINT: the first flushes, commits and exits 0; a second aborts at once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    from replicator.sinks.runner import SinkRunner  # noqa: PLC0415 - the Kafka client loads on use

    runner = SinkRunner(settings, destination)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if runner_stopping[0]:
            logging.getLogger("replicator.sink").error("second signal: aborting without flushing")
            os._exit(130)
        runner_stopping[0] = True
        logging.getLogger("replicator.sink").info("stopping: flushing and committing", extra={"signal": signum})
        runner.request_stop()

    runner_stopping = [False]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()


@click.group()
def sink() -> None:
    """Run a sink: consume the change topics and apply them to a destination."""


@sink.command("neo4j")
@config_option("neo4j")
@runner_options
@click.option("--uri", envvar="REPLICATOR_NEO4J_URI", default=Neo4jSettings.uri, show_default=True)
@click.option("--user", envvar="REPLICATOR_NEO4J_USER", default=Neo4jSettings.user, show_default=True)
@secret_option("--password", NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, "Neo4j password")
@click.option("--database", envvar="REPLICATOR_NEO4J_DATABASE", default=Neo4jSettings.database, show_default=True)
@graph_options(*GRAPH_FLAGS)
@click.option("--audit/--no-audit", default=False, hidden=True, help="Keep _applied seq lists (tests).")
def neo4j_sink(**opts: Any) -> None:  # noqa: ANN401 - click passes every option by name
    """Apply entity and relation changes to Neo4j (design §6)."""
    settings = runner_settings(opts, ("entities", "relations"))
    model = graph_model(opts, audit=opts["audit"])
    password = read_secret(opts["password"], opts["password_file"], "Neo4j password")
    graph = Neo4jSettings(uri=opts["uri"], user=opts["user"], password=password, database=opts["database"])
    from replicator.sinks.neo4j.destination import Neo4jDestination  # noqa: PLC0415 - the driver loads on use

    run_sink(settings, Neo4jDestination(settings.sink, graph, model))


@sink.group("qdrant", invoke_without_command=True)
@config_option("qdrant")
@runner_options
@connection_options
@click.option("--encode-batch", default=DEFAULT_ENCODE_BATCH, show_default=True,
              help="Texts per model.encode call (16-64 on a small CPU).")  # fmt: skip
@click.pass_context
def qdrant_sink(ctx: click.Context, /, **opts: Any) -> None:  # noqa: ANN401 - click passes every option by name
    """Apply entity and embedding changes to a Qdrant collection (384-d cosine, point id = entity id),
    embedding with the packaged all-MiniLM-L6-v2; or re-embed it (``reembed``)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = runner_settings(opts, ("entities", "embeddings"))
    api_key = read_secret(opts["api_key"], opts["api_key_file"], "Qdrant API key")
    qdrant = sink_settings(opts["url"], api_key, opts["path"], opts["collection"], settings.sink,
                           opts["encode_batch"], opts["layout"])  # fmt: skip
    from replicator.sinks.qdrant.destination import QdrantDestination  # noqa: PLC0415 - the client loads on use

    run_sink(settings, QdrantDestination(qdrant))


qdrant_sink.add_command(reembed_command)
