"""``replicator demo``: the main job on the local stack."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from replicator.clioptions import layout_option
from replicator.source.settings import parse_duration


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the demo's store, caxton.yaml, logs and Qdrant data go. Default: ./.demo/<time>.",
)
@click.option("--entities", default=200, show_default=True, help="Entities in the sample store.")
@click.option("--rate", default=50.0, show_default=True, help="Live writer's writes per second.")
@click.option("--max-pause", default="3s", show_default=True)
@click.option("--hash-vectors", is_flag=True, help="Skip the model: deterministic stand-in vectors (faster).")
@layout_option()
def demo(workdir: Path | None, entities: int, rate: float, max_pause: str, hash_vectors: bool, layout: str) -> None:
    """The main job on the local stack: a live store replicated to Neo4j and Qdrant, lag, then a cutover."""
    from replicator.demo.demo import run_demo  # noqa: PLC0415 - keeps `replicator --help` light

    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = run_demo(workdir or Path(".demo") / stamp, entities=entities, rate_per_s=rate,
                      max_pause_s=parse_duration(max_pause, "--max-pause"), real_model=not hash_vectors,
                      layout=layout)  # fmt: skip
    if not report.ok:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(demo)
