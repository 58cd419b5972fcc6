"""Every command declares each option once: click only warns about a duplicate ("The parameter
--config is used more than once"), on every run of the command, and the later declaration silently
wins. `replicator status` had --config twice (its own and the target options')."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import click

from replicator.cli import cli


def _commands(group: click.Group, prefix: str = "replicator") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def test_no_command_declares_an_option_twice() -> None:
    twice = {}
    for path, command in _commands(cli):
        seen = Counter(opt for param in command.params for opt in getattr(param, "opts", []))
        repeated = sorted(opt for opt, n in seen.items() if n > 1)
        if repeated:
            twice[path] = repeated
    assert twice == {}
