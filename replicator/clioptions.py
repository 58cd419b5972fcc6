"""Command-line options shared by several commands: ``--config``, secrets, and the Neo4j graph names.

``--config replicator.yaml`` (or ``REPLICATOR_CONFIG``) gives every command its settings from one
file: flags and ``REPLICATOR_*`` variables override the file, the file overrides the defaults
(``PRECEDENCE``). It fills click's ``default_map``, which click consults after the command line and
the environment and before an option's default.

A secret (a password, an API key) is never taken from the command line, where ``ps`` and shell
history show it to every user of the host. It comes from an environment variable or from a file
(``--<name>-file``, first line). The option itself still exists, hidden, so that passing it gets an
error that says what to do instead of "no such option".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from replicator.errors import ConfigError
from replicator.sinks.layouts import LAYOUT_ENV, LAYOUTS
from replicator.sinks.neo4j.model import GraphModel

F = TypeVar("F", bound=Callable[..., Any])


def _refuse_on_command_line(envvar: str, file_flag: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:  # noqa: ANN401 - click's callback
        if value is not None and ctx.get_parameter_source(str(param.name)) == ParameterSource.COMMANDLINE:
            raise ConfigError(
                f"{param.opts[0]} takes no value on the command line: every user of this host can read it there",
                hint=f"set {envvar} in the environment, or put it in a file readable only by you and pass {file_flag}",
            )
        return value

    return check


def _prefer_explicit_file(command: F, name: str) -> F:
    """A secret from ``--config`` gives way to a ``--<name>-file`` (flag or variable): precedence, not a
    conflict (``read_secret`` refuses a secret given twice at the same level). ``command``: a function,
    or a click.Command already built (its callback is wrapped)."""
    inner = command.callback if isinstance(command, click.Command) else command
    assert inner is not None

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - click passes options through
        ctx = click.get_current_context()
        if kwargs.get(f"{name}_file") is not None and ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP:
            kwargs[name] = None
        return inner(*args, **kwargs)

    if isinstance(command, click.Command):
        command.callback = wrapper
        return command
    return wrapper  # type: ignore[return-value]


def secret_option(flag: str, envvar: str, file_envvar: str, what: str) -> Callable[[F], F]:
    """``flag`` (from ``envvar`` or ``--config`` only) and ``flag-file`` (a path, or ``file_envvar``): the
    command receives both under their names; pass them to ``replicator.secrets.read_secret``."""
    file_flag = f"{flag}-file"

    def decorate(command: F) -> F:
        command = _prefer_explicit_file(command, flag.lstrip("-").replace("-", "_"))
        command = click.option(
            file_flag, envvar=file_envvar, type=click.Path(dir_okay=False, path_type=Path),
            help=f"File whose first line is the {what} [or {envvar} in the environment; never on the command line].",
        )(command)  # fmt: skip
        return click.option(
            flag, envvar=envvar, hidden=True, expose_value=True, callback=_refuse_on_command_line(envvar, file_flag)
        )(command)

    return decorate


#: The Neo4j sink's graph names, one flag each: what the sink writes with, lag, validate, diff, stats,
#: cutover and rollback read with (their defaults are GraphModel's, declared there once).
GRAPH_FLAGS: Final = {
    "entity_label": "Label of entity nodes.",
    "tombstone_label": "Label of tombstone nodes.",
    "position_label": "Label of the sinks' position nodes.",
    "relation_type_property": "Relationship property holding the exact relation_type text.",
    "confidence_property": "Property holding confidence (nodes and relationships).",
    "strength_property": "Property holding strength (nodes and relationships).",
    "layout": "Destination layout: caxton (design §6) or mcp (also what the MCP memory servers read; "
    "docs/layouts.md). Readers must name the layout the sink wrote.",
}


def layout_option(default: str = "caxton") -> Callable[[F], F]:
    """``--layout caxton|mcp`` (REPLICATOR_LAYOUT): the one declaration, for the Neo4j and Qdrant flags."""
    return click.option("--layout", type=click.Choice(LAYOUTS), envvar=LAYOUT_ENV, default=default,
                        show_default=True, help=GRAPH_FLAGS["layout"])  # fmt: skip


def graph_options(*names: str) -> Callable[[F], F]:
    """Flags for the GraphModel fields ``names`` (``--entity-label``, ...), defaults from GraphModel.
    Build the model with :func:`graph_model`."""
    defaults = {f.name: f.default for f in fields(GraphModel)}

    def decorate(command: F) -> F:
        for name in reversed(names):
            if name == "layout":
                command = layout_option(str(defaults[name]))(command)
                continue
            flag = "--" + name.replace("_", "-")
            command = click.option(flag, default=defaults[name], show_default=True, help=GRAPH_FLAGS[name])(command)
        return command

    return decorate


def graph_model(opts: dict[str, Any], *, audit: bool = False) -> GraphModel:
    """The GraphModel of the graph flags in ``opts`` (removed from it). Raises ConfigError."""
    return GraphModel(**{name: opts.pop(name) for name in GRAPH_FLAGS if name in opts}, audit=audit)


#: The store the source captures (lag, cutover, rollback, status).
source_db_option = click.option(
    "--db", "db", type=click.Path(path_type=Path), envvar="REPLICATOR_SOURCE_DB", default="./data/memory.db",
    show_default=True, help="Caxton's memory store (the source).",
)  # fmt: skip


CONFIG_ENV: Final = "REPLICATOR_CONFIG"
PRECEDENCE: Final = "flag > REPLICATOR_* variable > --config file > default"
#: ctx.meta key of the LoadedConfig, for a command that needs more than its parameters.
CONFIG_META: Final = "replicator.config"


#: The on/off flags a file sets (``cutover.reverse: false`` is ``--no-reverse``); other flags stay the
#: command line's.
FLAGS_FROM_FILE: Final = frozenset({"no_reverse"})


def _fitting(command: click.Command, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``command`` has parameters for (a choice the parameter does not offer is left to it)."""
    out = {}
    for param in command.params:
        name = str(param.name)
        flag = isinstance(param, click.Option) and param.is_flag and name not in FLAGS_FROM_FILE
        if name not in values or flag:
            continue
        offered = param.type.choices if isinstance(param.type, click.Choice) else None
        wanted = values[name] if param.multiple else (values[name],)
        if offered is not None and any(value not in offered for value in wanted):
            continue
        out[name] = values[name]
    return out


def _check_layout(command: click.Command, values: Mapping[str, Any], scope: str | None) -> None:
    """The destinations' layouts against what ``command`` can take: one ``--layout`` for every destination
    it reads (a sink: its own). A layout other than caxton without that parameter, or two different
    layouts for one ``--layout``, is an error naming the keys, never a wrong answer."""
    names = {str(p.name) for p in command.params}
    if scope is not None:
        sections = [s for s in ("neo4j", "qdrant") if scope.startswith(s)]
    else:
        sections = [
            s for s in ("neo4j", "qdrant") if f"{s}_layout" in values and any(n.startswith(f"{s}_") for n in names)
        ]
    layouts = {section: values[f"{section}_layout"] for section in sections if f"{section}_layout" in values}
    for section, layout in layouts.items():
        if layout != "caxton" and "layout" not in names:
            raise ConfigError(
                f"{section}.layout is {layout}, which `{command.name}` cannot use in this version",
                hint=f"remove {section}.layout (the caxton layout), or use a replicator that supports it",
            )
    if len(set(layouts.values())) > 1 and "layout" in names:
        raise ConfigError(
            f"neo4j.layout ({layouts['neo4j']}) and qdrant.layout ({layouts['qdrant']}) differ, and "
            f"`{command.name}` reads both with one --layout",
            hint="give both destinations the same layout",
        )


def config_option(scope: str | None = None) -> Callable[[F], F]:
    """``--config PATH`` (env REPLICATOR_CONFIG): the command's settings from replicator.yaml (or a seed
    guide file), below flags and variables. ``scope``: the destination a sink command writes
    (``neo4j``, ``qdrant``, ``qdrant-points``), whose settings it names plainly (``--group``)."""

    def load(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        if value is None:
            return None
        from replicator.config import load_config  # noqa: PLC0415 - read only when a file is given
        from replicator.config.environment import with_environment  # noqa: PLC0415
        from replicator.config.params import param_values  # noqa: PLC0415

        loaded = load_config(value)
        for warning in loaded.warnings:
            click.echo(f"warning: {value}: {warning}", err=True)
        # The REPLICATOR_* variables over the file's values, also those no flag of this command has
        # a variable for (a sink's group, a label): the daemons and the commands agree (flag > variable > file).
        values = param_values(with_environment(loaded.config, os.environ)[0], scope)  # type: ignore[arg-type]
        _check_layout(ctx.command, values, scope)
        ctx.default_map = {**(ctx.default_map or {}), **_fitting(ctx.command, values)}
        ctx.meta[CONFIG_META] = loaded
        return value

    return click.option(
        "--config", envvar=CONFIG_ENV, type=click.Path(dir_okay=False, path_type=Path), is_eager=True,
        expose_value=False, callback=load,
        help=f"replicator.yaml with this command's settings [env {CONFIG_ENV}; precedence: {PRECEDENCE}].",
    )  # fmt: skip
