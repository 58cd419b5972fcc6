"""``replicator cutover | rollback | status``: cut over to the new backend, or back."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from replicator.clioptions import CONFIG_META, config_option, source_db_option
from replicator.cutover import cutover as cutover_mod
from replicator.cutover import state as state_mod
from replicator.cutover.options import TargetOptions, target_options
from replicator.errors import ReplicatorError
from replicator.source.settings import parse_duration


@click.command()
@source_db_option
@target_options
@click.option("--target", type=click.Choice(["neo4j", "qdrant", "hybrid"]), required=True)
@click.option("--caxton-config", "caxton_config", type=click.Path(path_type=Path), required=True,
              help="Caxton's caxton.yaml, whose memory.backend is switched [or store.caxton_config].")  # fmt: skip
@click.option(
    "--max-pause",
    default="3s",
    show_default=True,
    help=f"Abort if writers would wait longer (at most {cutover_mod.MAX_PAUSE_S:g}s).",
)
@click.option(
    "--writer-wait",
    default=f"{cutover_mod.WRITER_WAIT_S:g}s",
    show_default=True,
    help="How long the runtime's writers wait for the store's lock (their busy timeout).",
)
@click.option("--max-lag", default=1000, show_default=True, help="Refuse to start if a sink is more seq behind.")
@click.option("--sample", default=10, show_default=True, help="Entities compared while fenced.")
@click.option(
    "--postpone-flag",
    type=click.Path(path_type=Path),
    help="Check readiness, then wait until this file is gone; the preflight is taken again at the go.",
)
@click.option("--json", "as_json", is_flag=True)
def cutover(db: Path, opts: TargetOptions, target: str, caxton_config: Path, max_pause: str, writer_wait: str,
            max_lag: int, sample: int, postpone_flag: Path | None, as_json: bool) -> None:  # fmt: skip
    """Fence the store's writers, drain the sinks, validate, then make the store refuse writes and
    switch caxton.yaml -- or change nothing."""
    plan = cutover_mod.CutoverPlan(
        db=db, config=caxton_config, target=target, max_pause_s=parse_duration(max_pause, "--max-pause"),
        max_lag=max_lag, sample=sample, postpone_flag=postpone_flag,
        writer_wait_s=parse_duration(writer_wait, "--writer-wait"),
    )  # fmt: skip
    from replicator.cutover.targets import sinks_for, store_identity  # noqa: PLC0415 - clients load on use

    for warning in plan.warnings():
        click.echo(f"warning: {warning}", err=True)
    loaded = click.get_current_context().meta.get(CONFIG_META)
    if loaded is not None and loaded.config.cutover.confirm:  # cutover.confirm: true in --config
        click.confirm(f"fence {db} and cut over to {target} now?", abort=True, err=True)
    kinds = ("neo4j", "qdrant") if target == "hybrid" else (target,)
    targets = sinks_for(kinds, opts, store_identity(db))
    try:
        report = cutover_mod.run(plan, targets, log=lambda line: click.echo(line, err=True))
    finally:
        for each in targets:
            each.close()
    click.echo(report.to_json() if as_json else report.text())
    if not report.ok:
        sys.exit(1)


@click.command()
@source_db_option
@target_options
@click.option("--caxton-config", "caxton_config", type=click.Path(path_type=Path),
              help="Caxton's caxton.yaml [default: the one the cutover used].")  # fmt: skip
@click.option(
    "--discard-new-writes", is_flag=True,
    help="Roll back without first checking that the new backend took no writes since the cutover "
    "(writes it took are lost).",
)  # fmt: skip
@click.option("--migration-id", help="The migration (`replicator migrate`) to roll back; recorded in its history.")
@click.option("--reason", help="Why, kept in the migration's history (the seed's rollback --reason).")
def rollback(
    db: Path, opts: TargetOptions, caxton_config: Path | None, discard_new_writes: bool,
    migration_id: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Undo a cutover (or resolve an interrupted one): writes resume on the store, caxton.yaml is restored.

    After a completed cutover, the destinations are first compared with the store in full (pass the
    cutover's connection flags): if the runtime wrote to them since, rollback refuses and names what
    differs, since the store does not have those writes."""
    from replicator.cutover import rollback as rollback_mod  # noqa: PLC0415 - clients load on use
    from replicator.cutover.targets import divergence  # noqa: PLC0415
    from replicator.migration import history  # noqa: PLC0415

    migration = None if migration_id is None else history.find(db, migration_id)  # an unknown id: named
    if migration is not None and migration.state == "running" and migration.alive():
        raise ReplicatorError(f"migration {migration.id} is running (pid {migration.pid})", hint="stop it first")
    check = None if discard_new_writes else divergence(db, opts)
    for line in rollback_mod.rollback(db, caxton_config, divergence=check):
        click.echo(line)
    if migration is not None:
        history.record(db, migration, "rolled_back", state="rolled_back", reason=reason or "rollback", pid=None)
        click.echo(f"migration {migration.id}: rolled back ({reason or 'no reason given'})")


@click.command()
@config_option()
@source_db_option
@click.option("--migration-id", help="Also the history of this migration (`replicator migrate`).")
@click.option("--json", "as_json", is_flag=True)
def status(db: Path, migration_id: str | None, as_json: bool) -> None:
    """The migration's state: replicating, cutting over (step N), cut over, aborted, rolled back."""
    if not db.exists():
        raise ReplicatorError(f"no store at {db}", hint="pass --db")
    if migration_id is not None:
        from replicator.migration import history  # noqa: PLC0415

        click.echo(history.find(db, migration_id).describe())
    st = state_mod.load(db)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(st), "describe": st.describe(),
                               "resolve": cutover_mod.resolution(st)}, indent=2))  # fmt: skip
        return
    click.echo(st.describe())
    fix = cutover_mod.resolution(st)
    if fix:
        click.echo(f"  next: {fix.replace('<db>', str(db))}")


def register(group: click.Group) -> None:
    for command in (cutover, rollback, status):
        group.add_command(command)
