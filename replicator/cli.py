"""The ``replicator`` command: one subcommand group per stage of the pipeline."""

from __future__ import annotations

import sys

import click

from replicator import __version__
from replicator.errors import ReplicatorError
from replicator.migrate import cli as migrate_cli
from replicator.migrate import tools_cli
from replicator.sinks.cli import sink
from replicator.smoke import smoke
from replicator.source.cli import source
from replicator.stack.cli import stack


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="replicator")
def cli() -> None:
    """Replicate Caxton's embedded memory store (SQLite) to Neo4j and Qdrant through Kafka.

    Pipeline: capture (changelog triggers, snapshot) -> Avro change events -> Kafka -> sinks
    (Neo4j, Qdrant) -> lag -> cutover.
    """


cli.add_command(stack)
cli.add_command(smoke)
cli.add_command(source)
migrate_cli.register(cli)  # lag, cutover, rollback, status, demo
tools_cli.register(cli)  # export, import, stats, diff, validate
cli.add_command(sink)


def main() -> None:
    """Console entry point: a ReplicatorError becomes its message and hint on stderr, exit 2."""
    try:
        cli.main(prog_name="replicator", standalone_mode=False)
    except ReplicatorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
