"""``replicator sink qdrant reembed`` and the Qdrant connection options (the sink itself runs from
``replicator/sinks/cli.py``, through the shared runner)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from replicator.clioptions import config_option, layout_option, secret_option
from replicator.secrets import read_secret
from replicator.sinks.settings import QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV, QdrantSettings

if TYPE_CHECKING:
    from replicator.sinks.qdrant.destination import QdrantSinkSettings

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """--url/--api-key-file (or REPLICATOR_QDRANT_API_KEY) or --path, --collection: shared by the sink
    and reembed."""
    for option in reversed([
        click.option("--url", envvar="REPLICATOR_QDRANT_URL", help="Qdrant server, e.g. http://localhost:6333."),
        secret_option("--api-key", QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV, "Qdrant API key"),
        click.option("--path", type=click.Path(path_type=Path), envvar="REPLICATOR_QDRANT_PATH",
                     help="Local-mode storage directory instead of a server."),
        click.option("--collection", default=QdrantSettings.collection, show_default=True,
                     envvar="REPLICATOR_QDRANT_COLLECTION"),
        layout_option(),
    ]):  # fmt: skip
        func = option(func)
    return func


def sink_settings(url: str | None, api_key: str | None, path: Path | None, collection: str, sink: str,
                  encode_batch: int, layout: str = "caxton") -> QdrantSinkSettings:  # fmt: skip
    """Validated settings from the flags. Raises ConfigError."""
    from replicator.sinks.qdrant.destination import QdrantSinkSettings  # noqa: PLC0415 - the client loads on use

    return QdrantSinkSettings(QdrantSettings(url=url, path=path, collection=collection, layout=layout), sink=sink,
                              api_key=api_key, encode_batch=encode_batch)  # fmt: skip


@click.command("reembed")
@config_option("qdrant-points")
@connection_options
@click.option("--batch-size", default=64, show_default=True, help="Points per page (read, encode, write).")
@click.option("--stale-only", is_flag=True, help="Skip points already labelled with this model version.")
def reembed_command(url: str | None, api_key: str | None, api_key_file: Path | None, path: Path | None,
                    collection: str, layout: str, batch_size: int, stale_only: bool) -> None:  # fmt: skip
    """Re-embed every point with the installed model, label it with this model version, while a live
    sink may keep writing: a point the live sink changed meanwhile is left as it wrote it
    (conditional upserts; needs Qdrant >= 1.17)."""
    from replicator.sinks.qdrant.embedder import Embedder  # noqa: PLC0415 - the model loads on use
    from replicator.sinks.qdrant.reembed import count_points  # noqa: PLC0415
    from replicator.sinks.qdrant.reembed import reembed as reembed_points  # noqa: PLC0415

    key = read_secret(api_key, api_key_file, "Qdrant API key")
    settings = sink_settings(url, key, path, collection, "reembed", min(batch_size, 64), layout)
    client = settings.connect()
    try:
        embedder = Embedder(batch_size=min(batch_size, 64))
        total = count_points(client, collection, settings.where)
        run = functools.partial(reembed_points, client, collection, embedder, batch_size, stale_only=stale_only,
                                where=settings.where, layout=layout)  # fmt: skip
        if sys.stderr.isatty():
            with click.progressbar(length=total, label="re-embedding", file=sys.stderr) as bar:
                report = run(progress=bar.update)
        else:
            done = [0]

            def log(n: int) -> None:
                done[0] += n
                click.echo(f"re-embedded page: {done[0]}/{total} points", err=True)

            report = run(progress=log)
    finally:
        client.close()
    click.echo(
        f"{report.reembedded} of {report.seen} points re-embedded as {embedder.version}; "
        f"{report.moved} changed by a live sink meanwhile, {report.awaiting_entity} awaiting their entity, "
        f"{report.current} already current"
        + (f", {report.foreign} of other clients left alone" if report.foreign else "")
    )
