"""The ``replicator`` command: one subcommand group per stage of the pipeline.

What the operator sees when something goes wrong (``main``):

* a ReplicatorError (a named problem: bad flag, unreachable server, refused cutover): its message
  and hint, exit 2;
* a foreign exception that is an environment fault (OSError: a missing directory, a permission, a
  full disk): one line naming it and the path, with a hint, exit 2;
* anything else is a bug: one line naming the exception, a hint to rerun with ``--debug`` (or
  ``REPLICATOR_DEBUG=1``) for the traceback and to report it, exit 70 (EX_SOFTWARE).

Never a raw traceback unless ``--debug`` asks for it.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from replicator import __version__
from replicator.config.cli import config_group
from replicator.cutover import cli as cutover_cli
from replicator.demo import cli as demo_cli
from replicator.errors import ReplicatorError
from replicator.guide import cli as guide_cli
from replicator.lifecycle import cli as lifecycle_cli
from replicator.migration import cli as migration_cli
from replicator.observe import cli as observe_cli
from replicator.reverse.cli import reverse
from replicator.sinks.cli import sink
from replicator.source.cli import source
from replicator.stack.cli import stack
from replicator.stack.smoke import smoke

#: Exit code of an unexpected exception (a bug), as sysexits.h names it.
EX_SOFTWARE = 70
_DEBUG_ENV = "REPLICATOR_DEBUG"


def _debug_requested() -> bool:
    return os.environ.get(_DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _set_debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        os.environ[_DEBUG_ENV] = "1"  # main() reads it once the command has failed
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="replicator")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help=f"Show the full traceback of an unexpected error (also {_DEBUG_ENV}=1).")  # fmt: skip
def cli() -> None:
    """Replicate Caxton's embedded memory store (SQLite) to Neo4j and Qdrant through Kafka.

    Pipeline: capture (changelog triggers, snapshot) -> Avro change events -> Kafka -> sinks
    (Neo4j, Qdrant) -> lag -> cutover.

    Every command reads one replicator.yaml with --config (or REPLICATOR_CONFIG; `replicator config
    init` writes one). Precedence: flag > REPLICATOR_* variable > --config file > default.
    """


cli.add_command(stack)
cli.add_command(smoke)
cli.add_command(source)
observe_cli.register(cli)  # lag
cutover_cli.register(cli)  # cutover, rollback, status
demo_cli.register(cli)  # demo
guide_cli.register(cli)  # export, import, stats, diff, validate
lifecycle_cli.register(cli)  # assess, check, tune, watch
migration_cli.register(cli)  # migrate, migration-status
cli.add_command(sink)
cli.add_command(config_group)  # config init, config check
cli.add_command(reverse)


def _command_line() -> str:
    """``replicator <command> [<subcommand>]`` as invoked (no option values: they may be secrets)."""
    words: list[str] = []
    command: click.Command = cli
    for arg in sys.argv[1:]:
        if arg.startswith("-"):
            continue
        sub = command.commands.get(arg) if isinstance(command, click.Group) else None
        if sub is None:
            break
        words.append(arg)
        command = sub
    return " ".join(["replicator", *words])


def report_unexpected(exc: BaseException) -> int:
    """Print an exception that is not a ReplicatorError the way an operator can act on it; returns the
    exit code. An OSError is the environment's (named, exit 2); anything else is a bug (exit 70)."""
    if _debug_requested():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        click.echo("  hint: check that the path exists and that this user may read and write it", err=True)
        return 2
    name = type(exc).__name__
    click.echo(f"error: unexpected {name} in `{_command_line()}`: {exc}", err=True)
    if not _debug_requested():
        click.echo(
            f"  hint: this is a bug in replicator {__version__}; rerun with --debug (or {_DEBUG_ENV}=1) "
            "for the traceback, and report it with that output",
            err=True,
        )
    return EX_SOFTWARE


def main() -> None:
    """Console entry point: see the module docstring for what each kind of failure prints."""
    try:
        code = cli.main(prog_name="replicator", standalone_mode=False)
    except ReplicatorError as exc:
        if _debug_requested():
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last line of defence: never a raw traceback
        sys.exit(report_unexpected(exc))
    sys.exit(code if isinstance(code, int) else 0)
