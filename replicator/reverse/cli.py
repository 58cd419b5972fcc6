"""``replicator reverse``: the changelog plugin for Neo4j, and the process applying it to the store."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from replicator.clioptions import source_db_option
from replicator.cutover.options import TargetOptions, target_options


@click.group()
def reverse() -> None:
    """Reverse replication after a cutover: Neo4j's changes flow back into the store (docs/reverse.md)."""


@reverse.command()
@click.option("--neo4j-lib", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="The lib/ directory of the Neo4j 5 server that will load the plugin.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write replicator-changelog.jar: the server's plugins/ directory.")  # fmt: skip
def plugin(neo4j_lib: Path, out: Path) -> None:
    """Build the changelog plugin (javac and jar of a JDK 17+, offline) against a server's own jars."""
    from replicator.reverse import plugin as plugin_mod  # noqa: PLC0415

    built = plugin_mod.build(plugin_mod.find_javac(), neo4j_lib, out / plugin_mod.JAR_NAME)
    click.echo(f"{built}: restart Neo4j to load it")


@reverse.command()
@source_db_option
@target_options
@click.option("--keep-embeddings", is_flag=True,
              help="Do not recompute the embeddings of entities whose text changed (they go stale).")  # fmt: skip
def run(db: Path, opts: TargetOptions, keep_embeddings: bool) -> None:
    """Turn capture on for the entity label in Neo4j (idempotent) and apply its changelog to the store
    until SIGTERM, or until a rollback turned capture off (then it exits 0 saying so); the position is
    the store's, so a restart after kill -9 loses and repeats nothing."""
    from replicator.reverse import process  # noqa: PLC0415 - the driver loads on use

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    model = opts.graph_model
    import neo4j  # noqa: PLC0415

    with neo4j.GraphDatabase.driver(opts.neo4j.uri, auth=opts.neo4j.auth()) as driver:
        head = process.enable(db, process.changelog_for(driver, opts.neo4j.database, model))
    click.echo(f"reverse: capturing Neo4j label {model.entity_label} (head seq {head.seq}) into {db}", err=True)
    embed = None if keep_embeddings else process.model_embed()
    if embed is not None:
        embed(["load the model before the first batch"])  # seconds: not inside the first transaction
    click.echo("reverse: applying", err=True)
    ended = process.run(db, opts.neo4j, model, embed=embed, stop=stopping.is_set,
                        log=lambda line: click.echo(line, err=True))  # fmt: skip
    if ended is not None:
        click.echo(ended, err=True)
