"""Command-line options shared by several commands: secrets, and the Neo4j graph names.

A secret (a password, an API key) is never taken from the command line, where ``ps`` and shell
history show it to every user of the host. It comes from an environment variable or from a file
(``--<name>-file``, first line). The option itself still exists, hidden, so that passing it gets an
error that says what to do instead of "no such option".
"""

from __future__ import annotations

from collections.abc import Callable
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


def secret_option(flag: str, envvar: str, file_envvar: str, what: str) -> Callable[[F], F]:
    """``flag`` (from ``envvar`` only) and ``flag-file`` (a path, or ``file_envvar``): the command receives
    both under their names; pass them to ``replicator.secrets.read_secret``."""
    file_flag = f"{flag}-file"

    def decorate(command: F) -> F:
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
