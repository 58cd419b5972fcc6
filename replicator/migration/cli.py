"""``replicator migrate`` and ``replicator migration-status`` (the seed guide's names).

Exit codes: 0 = migrated (or the status shown); 1 = the migration aborted (the report says where
and why; the store takes writes again); 2 = an error, named with its fix, before anything started
or recorded as ``failed`` (``status`` names it; a rerun resumes; ``rollback`` gives the store back).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from replicator.clioptions import CONFIG_META, config_option
from replicator.config.model import STRATEGIES
from replicator.errors import ConfigError

if TYPE_CHECKING:
    from replicator.config import MigrationConfig

_db = click.option(
    "--db", "db", type=click.Path(dir_okay=False, path_type=Path), envvar="REPLICATOR_STORE",
    help="The store (Caxton's memory.db) [default: store.path of --config].",
)  # fmt: skip


@click.command("migrate")
@config_option()
@_db
@click.option(
    "--caxton-config",
    "caxton_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Caxton's caxton.yaml, switched at the end [default: store.caxton_config of --config].",
)
@click.option("--strategy", type=click.Choice(STRATEGIES), help="[default: strategy of --config]")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows per destination transaction (blue-green's checkpoint).",
)
@click.option("--yes", is_flag=True, help="Switch without asking, even when cutover.confirm is set.")
@click.option("--entity-label", help="Overrides neo4j.entity_label of --config.")
@click.option(
    "--qdrant-path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Qdrant local mode in DIR instead of the file's qdrant url/path.",
)
def migrate(
    db: Path | None,
    caxton_config: Path | None,
    strategy: str | None,
    batch_size: int,
    yes: bool,
    entity_label: str | None,
    qdrant_path: Path | None,
) -> None:
    """The whole migration of the store in --config, recorded under a migration id. A rerun after an
    interruption resumes the unfinished migration of the store."""
    from replicator.capture.storefile import open_store  # noqa: PLC0415
    from replicator.config import LoadedConfig  # noqa: PLC0415
    from replicator.migration import bluegreen  # noqa: PLC0415
    from replicator.migration.progress import Progress  # noqa: PLC0415
    from replicator.migration.supervise import handle_interrupts  # noqa: PLC0415

    handle_interrupts()
    loaded = click.get_current_context().meta.get(CONFIG_META)
    if not isinstance(loaded, LoadedConfig):
        hint = "replicator migrate --config replicator.yaml (`replicator config init` writes one)"
        raise ConfigError("migrate needs its configuration file", hint=hint)
    cfg = _overridden(loaded.config, entity_label, qdrant_path)
    strategy = strategy or cfg.strategy
    db = db or cfg.store.path
    caxton = caxton_config or cfg.store.caxton_config
    if caxton is None:
        raise ConfigError("no caxton.yaml to switch", hint="set store.caxton_config in the file, or --caxton-config")
    if cfg.cutover.confirm and not yes and not sys.stdin.isatty():
        raise ConfigError("cutover.confirm asks before the switch, but there is no terminal", hint="pass --yes")
    target = cfg.target
    open_store(db, readonly=True).close()  # a missing or foreign store: named before anything is recorded
    bluegreen.refuse_running(db)
    migration = _resume_or_new(db, strategy, target, loaded.source_path)
    ask = cfg.cutover.confirm and not yes

    def go() -> bool:
        return _go(cfg.cutover.postpone_flag, ask, target)

    if strategy == "live":
        ctx = click.get_current_context()
        given = [
            n for n in ("entity_label", "qdrant_path") if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise ConfigError("--entity-label and --qdrant-path apply to blue-green only",
                              hint="write them in the file: the daemons of the live strategy read it")  # fmt: skip
        _live(cfg, loaded.source_path, db, caxton, migration, go)
        return
    progress = Progress()
    plan = bluegreen.BlueGreenPlan(cfg, db, caxton, batch_size=batch_size)
    run = bluegreen.BlueGreen(plan, migration, log=progress.line, progress=progress.update, wait_for_go=go)
    try:
        report = run.run()
    finally:
        progress.close()
    click.echo(report.text())
    if not report.ok:
        sys.exit(1)


def _resume_or_new(db: Path, strategy: str, target: str, config_path: Path) -> Any:  # noqa: ANN401
    """The store's unfinished migration of this strategy and target (a rerun resumes it), else a new one."""
    from replicator.migration import history  # noqa: PLC0415

    migration = history.unfinished(db)
    if migration is not None and migration.strategy == strategy and migration.target == target:
        click.echo(f"resuming migration {migration.id} (last step: {migration.last_step})", err=True)
        return migration
    migration = history.Migration(history.new_id(), strategy, target, str(config_path),
                                  started_ms=time.time_ns() // 1_000_000)  # fmt: skip
    click.echo(f"migration {migration.id}: {strategy} of {db} to {target}", err=True)
    return migration


def _live(cfg: MigrationConfig, config_path: Path, db: Path, caxton: Path, migration: Any, go: Any) -> None:  # noqa: ANN401
    from replicator.migration.live import Live, LivePlan  # noqa: PLC0415
    from replicator.migration.progress import Progress  # noqa: PLC0415

    plan = LivePlan(config_path, cfg, db, caxton)
    if cfg.source.metrics_port is None:
        click.echo("  (no source.metrics_port: the snapshot's progress is not shown)", err=True)
    progress = Progress()
    try:
        report = Live(plan, migration, log=progress.line, wait_for_go=go, show=progress.update).run()
    finally:
        progress.close()
    click.echo(report.text)
    if not report.ok:
        sys.exit(1)


def _overridden(cfg: MigrationConfig, entity_label: str | None, qdrant_path: Path | None) -> MigrationConfig:
    """The file's configuration with the REPLICATOR_* variables (``config.environment``) and the flags
    in place of its values: flag > variable > file, as for every command."""
    import os  # noqa: PLC0415

    from replicator.config.environment import with_environment  # noqa: PLC0415

    cfg, _ = with_environment(cfg, os.environ)
    if entity_label is not None and cfg.neo4j is not None:
        graph = replace(cfg.neo4j.graph, entity_label=entity_label)
        cfg = replace(cfg, neo4j=replace(cfg.neo4j, graph=graph))
    if qdrant_path is not None and cfg.qdrant is not None:
        cfg = replace(cfg, qdrant=replace(cfg.qdrant, url=None, path=qdrant_path, api_key=None))
    return cfg


def _go(flag: Path | None, ask: bool, target: str) -> bool:
    """Block until the switch may happen: the postpone flag gone, then the operator's yes if asked."""
    if flag is not None and flag.exists():
        click.echo(f"ready to switch; postponed while {flag} exists", err=True)
        while flag.exists():
            time.sleep(0.5)
    if not ask:
        return True
    return click.confirm(f"switch caxton.yaml to {target}?", default=False, err=True)


@click.command("migration-status")
@config_option()
@_db
@click.option("--migration-id", help="One migration (default: every migration of the store).")
@click.option("--json", "as_json", is_flag=True)
def migration_status(db: Path | None, migration_id: str | None, as_json: bool) -> None:
    """The migrations of the store, by id, with their steps (the seed guide's `migration-status`)."""
    from replicator.migration import history  # noqa: PLC0415

    if db is None:
        raise ConfigError("which store?", hint="pass --db ./data/memory.db or --config replicator.yaml")
    found = [history.find(db, migration_id)] if migration_id else list(history.load_all(db).values())
    if as_json:
        click.echo(json.dumps([asdict(m) for m in found], indent=2))
        return
    if not found:
        click.echo(f"no migration recorded for {db}")
    for m in found:
        click.echo(m.describe())
        for s in m.steps:
            click.echo(f"  {time.strftime('%H:%M:%S', time.gmtime(s['at_ms'] / 1000))}Z {s['step']}")


def register(group: click.Group) -> None:
    for command in (migrate, migration_status):
        group.add_command(command)
