"""``replicator stack``: run the real Kafka and Neo4j locally, without Docker."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from replicator.clioptions import secret_option
from replicator.secrets import read_secret
from replicator.stack import control
from replicator.stack.settings import (
    DEFAULT_NEO4J_PASSWORD,
    KAFKA_VERSION,
    NEO4J_VERSION,
    StackSettings,
    default_cache_dir,
)

_dir_option = click.option(
    "--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path(".stack"),
    envvar="REPLICATOR_STACK_DIR", show_default=True, help="Project-local directory for data, logs and pid files.",
)  # fmt: skip


def _settings_for(root: Path) -> StackSettings:
    """The settings ``up`` last used under ``root`` (so status/down need no port flags)."""
    return control.load_settings(root) or StackSettings(root=root)


@click.group()
def stack() -> None:
    """Run Apache Kafka (KRaft) and Neo4j Community on 127.0.0.1 from Maven Central jars.

    Jars are cached under ~/.cache/replicator (or $XDG_CACHE_HOME); data and logs stay in --dir.
    """


@stack.command()
@_dir_option
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=default_cache_dir,
              envvar="REPLICATOR_STACK_CACHE", help="Jar and launcher cache shared by all checkouts.")  # fmt: skip
@click.option("--brokers", type=int, default=1, show_default=True, envvar="REPLICATOR_STACK_BROKERS",
              help="Kafka nodes, each a broker and a KRaft controller voter; 3 survives losing any one.")  # fmt: skip
@click.option("--kafka-port", type=int, default=9092, show_default=True, envvar="REPLICATOR_KAFKA_PORT",
              help="Client port of the first broker; broker N listens on it + N - 1.")  # fmt: skip
@click.option("--kafka-controller-port", type=int, default=None, show_default="right after the client ports",
              help="Controller port of the first node; the next ones follow it.")  # fmt: skip
@click.option("--kafka-heap-mb", type=int, default=StackSettings.kafka_heap_mb, show_default=True,
              help="Java heap of each Kafka node, in MiB.")  # fmt: skip
@click.option("--bolt-port", type=int, default=7687, show_default=True, envvar="REPLICATOR_BOLT_PORT")
@secret_option("--neo4j-password", "NEO4J_PASSWORD", "NEO4J_PASSWORD_FILE",
               f"password of the neo4j user [default: {DEFAULT_NEO4J_PASSWORD}]")  # fmt: skip
@click.option("--neo4j-auth/--no-neo4j-auth", default=True, show_default=True, help="Neo4j authentication.")
@click.option("--kafka-version", default=KAFKA_VERSION, show_default=True)
@click.option("--neo4j-version", default=NEO4J_VERSION, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=180.0, show_default=True,
              help="Seconds to wait for each server to answer.")  # fmt: skip
def up(root: Path, cache: Path, brokers: int, kafka_port: int, kafka_controller_port: int | None,
       kafka_heap_mb: int, bolt_port: int, neo4j_password: str | None, neo4j_password_file: Path | None,
       neo4j_auth: bool, kafka_version: str, neo4j_version: str, timeout_s: float) -> None:  # fmt: skip
    """Resolve jars, start every server and wait until each answers. Harmless when already up; starts
    again only what is not running (a broker that died, say)."""
    if not neo4j_auth:
        neo4j_password = ""
    elif neo4j_password is None and neo4j_password_file is None:
        neo4j_password = DEFAULT_NEO4J_PASSWORD  # the local stack's own default, known to nothing else
    else:
        neo4j_password = read_secret(neo4j_password, neo4j_password_file, "Neo4j password") or ""
    settings = StackSettings(
        root=root, cache=cache, brokers=brokers, kafka_port=kafka_port,
        kafka_controller_port=kafka_controller_port or 0, kafka_heap_mb=kafka_heap_mb, bolt_port=bolt_port,
        neo4j_password=neo4j_password, kafka_version=kafka_version, neo4j_version=neo4j_version,
        start_timeout_s=timeout_s,
    )  # fmt: skip
    _print_status(control.up(settings, click.echo))


@stack.command()
@_dir_option
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=default_cache_dir,
              envvar="REPLICATOR_STACK_CACHE")  # fmt: skip
def resolve(root: Path, cache: Path) -> None:
    """Only fetch the jars (and build the Neo4j launcher) into the cache; start nothing."""
    control.resolve(StackSettings(root=root, cache=cache), click.echo)


@stack.command()
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(root: Path, as_json: bool) -> None:
    """Show each server (every Kafka node), its pid and whether it answers. Exit 1 unless all answer."""
    settings = _settings_for(root)
    statuses = control.status(settings)
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        _print_status(statuses)
    if any(s.pid is None for s in statuses) and any(s.pid is not None for s in statuses):
        # Some run, some do not (a broker that died): `up` with the same shape starts only those.
        shape = " ".join(f"{flag} {value}" for flag, value in settings.shape().items())
        click.echo(f"  to start what is not running: replicator stack up --dir {root} {shape}", err=as_json)
    sys.exit(0 if all(s.answering for s in statuses) else 1)


@stack.command()
@_dir_option
def down(root: Path) -> None:
    """Stop the servers this stack started (and nothing else). Harmless when already down."""
    control.down(_settings_for(root), click.echo)


def _print_status(statuses: list[control.ServerStatus]) -> None:
    for s in statuses:
        state = "answering" if s.answering else ("NOT ANSWERING" if s.pid else "stopped")
        pid = f"pid {s.pid}" if s.pid else "no pid"
        click.echo(f"  {s.name:<7} {state:<13} {s.endpoint:<24} {pid:<10} {s.detail}")
        if not s.answering:
            click.echo(f"         log: {s.log}")
