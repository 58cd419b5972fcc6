"""Command-line options shared by several commands that are more than a flag: secrets.

A secret (a password, an API key) is never taken from the command line, where ``ps`` and shell
history show it to every user of the host. It comes from an environment variable or from a file
(``--<name>-file``, first line). The option itself still exists, hidden, so that passing it gets an
error that says what to do instead of "no such option".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from replicator.errors import ConfigError

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
