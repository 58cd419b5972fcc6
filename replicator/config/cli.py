"""``replicator config init | check``: write a commented starting replicator.yaml, and check one.

Exit codes: 0 = written / valid (and, with ``--connect``, every server answered); 2 = a problem, named
with its key and fix (printed by the root command, never a traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from replicator.errors import ConfigError


@click.group("config")
def config_group() -> None:
    """One configuration for the whole migration: replicator.yaml (docs/config.md)."""


@config_group.command("init")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("replicator.yaml"),
              show_default=True, help="File to write ('-': standard output).")  # fmt: skip
@click.option(
    "--from-seed",
    "seed_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Start from one of the seed guide's files (migration-config.yaml, neo4j-migration.yaml, ...).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init_cmd(output: Path, seed_file: Path | None, force: bool) -> None:
    """Write a commented starting replicator.yaml: every key, its default and its meaning."""
    from replicator.config.loader import read_document  # noqa: PLC0415 - loaded on use (fast --help)
    from replicator.config.seed import is_seed, translate  # noqa: PLC0415
    from replicator.config.template import from_seed, render  # noqa: PLC0415

    if seed_file is None:
        text = render()
    else:
        data = read_document(seed_file)
        if not is_seed(data):
            raise ConfigError(f"{seed_file} is not one of the seed guide's files (no migration: section)",
                              hint="pass migration-config.yaml, neo4j-migration.yaml, qdrant-migration.yaml or "
                              "hybrid-migration.yaml; or leave out --from-seed")  # fmt: skip
        translated, warnings, _ = translate(data, os.environ)
        text = from_seed(translated, tuple(warnings))
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    if output.exists() and not force:
        raise ConfigError(f"{output} exists", hint="pass --force to replace it, or --output another file")
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}; edit it, then `replicator config check {output}`", err=True)


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--connect", is_flag=True, help="Also reach Kafka, Neo4j (with its credentials) and Qdrant.")
def check_cmd(file: Path, connect: bool) -> None:
    """Validate a configuration (unknown keys, types, variables, files) and print it as every command
    will use it, secrets masked. Servers are reached only with --connect."""
    from replicator.config.environment import with_environment  # noqa: PLC0415 - loaded on use (fast --help)
    from replicator.config.loader import load_config  # noqa: PLC0415
    from replicator.config.template import show  # noqa: PLC0415

    loaded = load_config(file)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    config, overridden = with_environment(loaded.config, os.environ)
    click.echo(f"# {file}: valid" + ("; the environment overrides " + ", ".join(overridden) if overridden else ""))
    click.echo(show(config))
    if connect:
        _connect(config)


def _connect(config: object) -> None:
    from replicator.config.connect import probe  # noqa: PLC0415 - clients load only with --connect
    from replicator.lifecycle.check import format_checks  # noqa: PLC0415

    checks = probe(config)  # type: ignore[arg-type]
    click.echo(format_checks(checks).rsplit("\n", 1)[0])
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        names = ", ".join(f"{c.name} ({c.detail})" for c in failed)
        raise ConfigError(f"cannot reach: {names}", hint=failed[0].fix or "see the lines above")
    click.echo("every server answers", err=True)
    sys.stdout.flush()
