"""``replicator lag``: how far each sink is behind, on the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from replicator.clioptions import source_db_option
from replicator.cutover.options import TargetOptions, target_options
from replicator.source.settings import parse_duration


@click.command()
@source_db_option
@target_options
@click.option("--sink", "kinds", multiple=True, type=click.Choice(["neo4j", "qdrant"]), help="Default: both.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--watch", is_flag=True, help="Refresh every --interval until interrupted.")
@click.option("--interval", default="1s", show_default=True, help="Time between the two samples a status needs.")
def lag(db: Path, opts: TargetOptions, kinds: tuple[str, ...], as_json: bool, watch: bool, interval: str) -> None:
    """How far each sink is behind the source: events, seq and seconds, with a status and a drain estimate."""
    from replicator.observe import lag as lag_mod  # noqa: PLC0415 - the Kafka client loads on use

    gap = parse_duration(interval, "--interval")
    kinds = kinds or ("neo4j", "qdrant")
    previous = lag_mod.sample(db, opts, kinds, None, elapsed_s=0)
    while True:
        time.sleep(gap)
        report = lag_mod.sample(db, opts, kinds, previous, elapsed_s=gap)
        if as_json:
            click.echo(report.to_json())
        else:
            if watch and sys.stdout.isatty():
                click.clear()
            click.echo(report.table())
        if not watch:
            return
        previous = report


def register(group: click.Group) -> None:
    group.add_command(lag)
