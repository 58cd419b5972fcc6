"""``replicator cutover | rollback | status``: cut over to the new backend, or back."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from replicator.clioptions import CONFIG_META, source_db_option
from replicator.cutover import cutover as cutover_mod
from replicator.cutover import state as state_mod
from replicator.cutover.options import TargetOptions, target_options
from replicator.cutover.rollback import CATCH_UP_S
from replicator.errors import ReplicatorError, listed
from replicator.source.settings import parse_duration

if TYPE_CHECKING:
    from replicator.reverse.process import ReverseLag


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
@click.option(
    "--sample",
    default=cutover_mod.CutoverPlan.sample,
    show_default=True,
    help="Random entities also compared field by field under the fence (each costs the writers' pause a read).",
)
@click.option(
    "--postpone-flag",
    type=click.Path(path_type=Path),
    help="Check readiness, then wait until this file is gone; the preflight is taken again at the go.",
)
@click.option("--no-reverse", is_flag=True,
              help="Do not capture Neo4j's writes for a lossless rollback (docs/reverse.md).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def cutover(db: Path, opts: TargetOptions, target: str, caxton_config: Path, max_pause: str, writer_wait: str,
            max_lag: int, sample: int, postpone_flag: Path | None, no_reverse: bool,
            as_json: bool) -> None:  # fmt: skip
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
    reverse = "neo4j" in kinds and not no_reverse
    targets = sinks_for(kinds, opts, store_identity(db))
    from replicator.reverse import process  # noqa: PLC0415

    try:
        if reverse:
            process.prepare(db, opts.neo4j, opts.graph_model)  # before the switch: no Neo4j write is missed
        report = cutover_mod.run(plan, targets, log=lambda line: click.echo(line, err=True))
    finally:
        for each in targets:
            each.close()
    if report.ok and reverse:
        pid, log = process.spawn(db, opts.neo4j, opts.graph_model)
        click.echo(f"reverse: `replicator reverse run` started (pid {pid}, log {log})", err=True)
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
    "(writes it took are lost; with reverse replication, the changes the store set aside are).",
)  # fmt: skip
@click.option("--migration-id", help="The migration (`replicator migrate`) to roll back; recorded in its history.")
@click.option("--reason", help="Why, kept in the migration's history (the seed's rollback --reason).")
@click.option(
    "--max-pause",
    default="3s",
    show_default=True,
    help="With reverse replication: abort if Neo4j's writers would wait longer for the store to drain.",
)
@click.option(
    "--catch-up",
    default=f"{CATCH_UP_S:g}s",
    show_default=True,
    help="With reverse replication: before fencing Neo4j, how long to wait for the store to apply its changelog.",
)
def rollback(
    db: Path, opts: TargetOptions, caxton_config: Path | None, discard_new_writes: bool,
    migration_id: str | None, reason: str | None, max_pause: str, catch_up: str,
) -> None:  # fmt: skip
    """Undo a cutover (or resolve an interrupted one): writes resume on the store, caxton.yaml is restored.

    When Neo4j's writes flow back (`replicator reverse run`, docs/reverse.md), Neo4j's writers are
    fenced and the store drains them first: nothing is lost. Otherwise, after a completed cutover, the
    destinations are first compared with the store in full (pass the cutover's connection flags): if
    the runtime wrote to them since, rollback refuses and names what differs."""
    from replicator.cutover import rollback as rollback_mod  # noqa: PLC0415 - clients load on use
    from replicator.cutover.targets import divergence  # noqa: PLC0415
    from replicator.migration import history  # noqa: PLC0415
    from replicator.reverse.control import Reverse  # noqa: PLC0415

    migration = None if migration_id is None else history.find(db, migration_id)  # an unknown id: named
    if migration is not None and migration.state == "running" and migration.alive():
        raise ReplicatorError(f"migration {migration.id} is running (pid {migration.pid})", hint="stop it first")
    check = None if discard_new_writes else divergence(db, opts)
    st = state_mod.load(db)
    reverse = None
    if st.state in ("cut_over", "rolling_back") and st.target in ("neo4j", "hybrid"):
        reverse = Reverse(db, opts.neo4j, opts.entity_label)
    try:
        lines = rollback_mod.rollback(db, caxton_config, divergence=check, reverse=reverse,
                                      max_pause_s=parse_duration(max_pause, "--max-pause"),
                                      catch_up_s=parse_duration(catch_up, "--catch-up"))  # fmt: skip
    finally:
        if reverse is not None:
            reverse.close()
    for line in lines:
        click.echo(line)
    if migration is not None:
        history.record(db, migration, "rolled_back", state="rolled_back", reason=reason or "rollback", pid=None)
        click.echo(f"migration {migration.id}: rolled back ({reason or 'no reason given'})")


@click.command()
@source_db_option
@target_options  # with --config (config_option): declared once
@click.option("--migration-id", help="Also the history of this migration (`replicator migrate`).")
@click.option("--json", "as_json", is_flag=True)
def status(db: Path, opts: TargetOptions, migration_id: str | None, as_json: bool) -> None:
    """The migration's state: replicating, cutting over (step N), cut over, aborted, rolled back; after
    a cutover to Neo4j, the reverse lag (Neo4j's changes not yet in the store)."""
    if not db.exists():
        raise ReplicatorError(f"no store at {db}", hint="pass --db")
    if migration_id is not None:
        from replicator.migration import history  # noqa: PLC0415

        click.echo(history.find(db, migration_id).describe())
    st = state_mod.load(db)
    reverse = _reverse_line(db, opts) if st.state == "cut_over" and st.target in ("neo4j", "hybrid") else None
    from replicator.cutover.rollback import resolution  # noqa: PLC0415

    fix = resolution(st) or cutover_mod.resolution(st)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(st), "describe": st.describe(), "resolve": fix,
                               "rollback": st.rollback_resolution(), "reverse": reverse}, indent=2))  # fmt: skip
        return
    click.echo(st.describe())
    if reverse:
        click.echo(f"  {reverse}")
    if fix:
        click.echo(f"  next: {fix.replace('<db>', str(db))}")


def _reverse_line(db: Path, opts: TargetOptions) -> str:
    """One line on the reverse process (reverse_status), or what keeps it from being read."""
    from replicator.reverse.process import read_lag  # noqa: PLC0415

    try:
        lag = read_lag(db, opts.neo4j, opts.entity_label)
    except Exception as exc:  # status names what it cannot read, it never fails on it
        return f"reverse: cannot read Neo4j's changelog at {opts.neo4j.uri} ({str(exc).splitlines()[0]})"
    if lag is None:
        return f"reverse: off (Neo4j label {opts.entity_label} is not captured; writes there stay there)"
    return reverse_status(lag, time.time_ns() // 1_000_000)


def reverse_status(lag: ReverseLag, now_ms: int) -> str:
    """The reverse process's status line: lag's status rules from one sample (OK or STOP), and what
    the store set aside, which a rollback would refuse over. Pure."""
    from replicator.observe.lag import assess, reverse_sink_lag  # noqa: PLC0415 - clients load on use

    row = assess(None, reverse_sink_lag(lag), 0.0, now_ms)
    line = (f"reverse: {row.status}, lag {lag.transactions} transactions / {lag.seconds:.1f}s "
            f"(applied seq {lag.applied_seq} of {lag.head_seq})")  # fmt: skip
    if not lag.set_aside:
        return line
    aside = lag.set_aside
    return (f"{line}\n    SET ASIDE: {len(aside)} change(s) Neo4j took are not in the store (its constraints "
            f"refused them; rollback refuses until each is fixed in Neo4j): {listed(aside, 3, '; ')}")  # fmt: skip


def register(group: click.Group) -> None:
    for command in (cutover, rollback, status):
        group.add_command(command)
