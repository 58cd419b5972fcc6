"""``replicator source``: install / uninstall / status of capture, and ``run``, the source daemon."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from replicator.capture import parked
from replicator.capture.install import install, read_state, uninstall
from replicator.capture.storefile import CaptureError, open_store, write_transaction
from replicator.clioptions import CONFIG_META, config_option
from replicator.source.settings import ENV, SourceSettings, parse_duration

_DB = click.option("--db", "db", type=click.Path(path_type=Path), required=True, help="Caxton's memory.db")
_TIMEOUT = click.option("--lock-timeout", default=5.0, show_default=True, help="seconds to wait for the write lock")


@click.group()
def source() -> None:
    """Capture the store (triggers + changelog) and stream it to Kafka, exactly once."""


@source.command("install")
@config_option()
@_DB
@_TIMEOUT
def install_cmd(db: Path, lock_timeout: float) -> None:
    """Install (or upgrade) the changelog and triggers. Idempotent; re-run after the writer adds columns."""
    state = install(db, timeout_s=lock_timeout)
    click.echo(f"capture v{state.version} installed in {db} (store id {state.store_id}, head seq {state.head_seq})")


@source.command("uninstall")
@config_option()
@_DB
@_TIMEOUT
@click.option(
    "--forget-identity",
    is_flag=True,
    help="also drop the meta table (store id, head seq): a later install is a NEW store, whose "
    "sinks need new destinations (another entity label and collection)",
)
def uninstall_cmd(db: Path, lock_timeout: float, forget_identity: bool) -> None:
    """Remove the triggers and the changelog; keep the store's identity (id, head seq) so that a later
    install continues its seq and the source re-snapshots what changed meanwhile. Unpublished
    changelog rows are discarded (the re-snapshot carries their rows' current state)."""
    discarded = uninstall(db, timeout_s=lock_timeout, forget=forget_identity)
    click.echo(f"capture removed from {db}; {discarded} unpublished changelog row(s) discarded")
    if not forget_identity:
        click.echo("kept: the store id and head seq (_replicator_meta); `install` continues from them")


@source.command("status")
@config_option()
@_DB
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status_cmd(db: Path, as_json: bool) -> None:
    """Capture version, store id, changelog backlog, head seq, missing triggers. Exit 1 if not installed."""
    conn = open_store(db, readonly=True)
    try:
        state = read_state(conn)
        parked_count = parked.count_parked(conn)
    finally:
        conn.close()
    data: dict[str, Any] = {
        "db": str(db),
        "installed": state.installed,
        "version": state.version,
        "store_id": state.store_id,
        "backlog": state.backlog,
        "head_seq": state.head_seq,
        "capture_from": state.capture_from,
        "missing_triggers": list(state.missing_triggers),
        "parked": parked_count,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            click.echo(f"{key:17} {shown if shown not in ('', None) else '-'}")
    if not state.installed or state.missing_triggers:
        sys.exit(1)


@source.command("parked")
@config_option()
@_DB
@click.option("--all", "everything", is_flag=True, help="also list parked rows already retried")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def parked_cmd(db: Path, everything: bool, as_json: bool) -> None:
    """Changes the source parked (too large for max_message_bytes, or a value no event carries), with
    their reason. Exit 1 while any waits for `source retry-parked`."""
    conn = open_store(db, readonly=True)
    try:
        rows = parked.list_parked(conn, include_retried=everything)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    elif not rows:
        click.echo(f"no parked rows in {db}")
    for r in [] if as_json else rows:
        size = "-" if r.size_bytes is None else f"{r.size_bytes} bytes"
        state = "waiting" if r.retried_seq is None else f"retried as seq {r.retried_seq}"
        click.echo(f"#{r.id} seq {r.seq} {r.table} id {r.row_id} op {r.op}: {size}, limit {r.limit_bytes}; {state}")
        click.echo(f"    {r.reason}")
    if any(r.retried_seq is None for r in rows):
        sys.exit(1)


@source.command("retry-parked")
@config_option()
@_DB
@_TIMEOUT
@click.option("--id", "ids", type=int, multiple=True, help="a parked row's #id (repeatable) [default: all waiting]")
def retry_parked_cmd(db: Path, lock_timeout: float, ids: tuple[int, ...]) -> None:
    """Send parked rows again: each row's CURRENT state becomes a new changelog row (a delete if it is
    gone), published by the running source. Raise max_message_bytes first if they were too large; one
    that still does not fit is parked again, named."""
    conn = open_store(db, timeout_s=lock_timeout)
    try:
        state = read_state(conn)
        if not state.installed:
            raise CaptureError(f"capture is not installed in {db}", hint="run `replicator source install` first")
        with write_transaction(conn, db, lock_timeout):
            done = parked.retry(conn, state.columns, list(ids) or None)
    finally:
        conn.close()
    missing = sorted(set(ids) - {p.id for p, _ in done})
    for row, seq in done:
        click.echo(f"#{row.id} {row.table} id {row.row_id}: queued as changelog seq {seq}")
    click.echo(f"{len(done)} parked row(s) queued for the source")
    if missing:
        raise CaptureError(
            f"no waiting parked row with id {', '.join(map(str, missing))}",
            hint="`replicator source parked --all` lists them",
        )


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else parse_duration(value, f"--{param.name}".replace("_", "-"))


@source.command("run")
@config_option("source")
@click.option("--db", "db", type=click.Path(path_type=Path), envvar=ENV["db"], help="Caxton's memory.db")
@click.option("--bootstrap-servers", envvar=ENV["bootstrap_servers"], help="Kafka host:port[,...]")
@click.option("--topic-prefix", envvar=ENV["topic_prefix"], help="topic name prefix [caxton.memory]")
@click.option("--partitions", type=int, envvar=ENV["partitions"], help="partitions of topics the source creates [3]")
@click.option(
    "--replication-factor",
    type=int,
    envvar=ENV["replication_factor"],
    help="replicas of topics the source creates [min(3, brokers)]",
)
@click.option(
    "--min-insync-replicas",
    type=int,
    envvar=ENV["min_insync_replicas"],
    help="in-sync replicas a commit needs, set on topics the source creates [min(2, replication factor)]",
)
@click.option("--metrics-port", type=int, envvar=ENV["metrics_port"], help="serve /metrics and /healthz on this port")
@click.option("--metrics-host", envvar=ENV["metrics_host"],
              help="address the endpoint binds [127.0.0.1; 0.0.0.0: every interface]")  # fmt: skip
@click.option(
    "--schema-registry",
    envvar=ENV["schema_registry"],
    help="Confluent Schema Registry URL: frame values with its schema ids [default: Avro single-object encoding]",
)
@click.option(
    "--heartbeat-interval",
    envvar=ENV["heartbeat_interval_s"],
    callback=_duration,
    help="heartbeat period while idle, e.g. 1s [1s]",
)
@click.option("--batch-rows", type=int, help="changelog rows per Kafka transaction [500]")
@click.option(
    "--max-message-bytes",
    envvar=ENV["max_message_bytes"],
    help="Kafka's record limit for the whole pipeline, e.g. 32MiB; larger events are parked [32MiB]",
)
@click.option("--log-format", type=click.Choice(["kv", "json"]), default="kv", show_default=True)
@click.pass_context
def run_cmd(ctx: click.Context, /, log_format: str, heartbeat_interval: float | None, **flags: Any) -> None:  # noqa: ANN401
    """Run the source: snapshot on first start, then stream changes. First SIGTERM/SIGINT drains and
    exits 0; a second aborts at once (exit 130)."""
    from replicator.source.daemon import SourceAborted, SourceDaemon, event  # noqa: PLC0415 - the Kafka client loads on use

    _configure_logging(log_format)
    loaded = ctx.meta.get(CONFIG_META)
    # What only the file sets (no flag): below every flag, which click resolved as flag > env > file.
    file_only = {"snapshot_chunk_rows": loaded.config.source.snapshot_chunk_rows} if loaded is not None else {}
    settings = SourceSettings.load({**file_only, **flags, "heartbeat_interval_s": heartbeat_interval})
    daemon = SourceDaemon(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        event(logging.INFO, "stop_requested", signal=signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.run()
    except SourceAborted:
        sys.exit(130)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, then the fields ``event()`` put on the record, each value
    whole (never re-parsed from the ``key=value`` text); any other record's text goes under ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname.lower()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s %(message)s"))
    root = logging.getLogger("replicator")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
