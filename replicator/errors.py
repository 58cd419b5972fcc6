"""Errors every part of the replicator raises: each names the problem and what to do about it.

Every failure is one of three kinds, and every daemon and command handles each kind the same way:

* ``Retryable``: the work may succeed later unchanged (a server down, restarting, overloaded, a
  group coordinator still loading). Retry the same work with capped backoff; commit nothing, drop
  nothing. A daemon stays up; a one-shot command retries within a bound, then reports it as fatal.
* ``Fatal``: this process cannot make progress until an operator changes something (a wrong or
  expired password, a revoked role, a missing database or collection, an unloadable model, a bad
  flag). Stop consuming, commit nothing, say once what is wrong and how to fix it, exit non-zero.
* ``Poison``: one event or row that the destination refuses for what it contains, proven by the
  rest of its batch applying. Set that one aside (dead-letter topic, parked rows) and go on.

A failure of the destination must never look like a bad event: code that cannot tell which kind a
foreign exception is treats it as ``Retryable`` or ``Fatal``, never ``Poison``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class Kind(enum.Enum):
    """What to do about a failure (see the module docstring)."""

    RETRYABLE = "retryable"
    FATAL = "fatal"
    POISON = "poison"


class ReplicatorError(Exception):
    """Base error: a message that names what went wrong and a hint that says what to do next.

    The CLI prints both and exits non-zero; nothing else about the error is shown to the user, so the
    message must carry its context (which file, which port, which server). An error that is not one
    of the three kinds below is an operator's or environment's problem: fatal for the command.
    """

    kind: Kind = Kind.FATAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class Retryable(ReplicatorError):
    """The same work may succeed later: retry with capped backoff, nothing committed or dropped."""

    kind = Kind.RETRYABLE


class Fatal(ReplicatorError):
    """This process cannot go on until an operator fixes the cause named in the message and hint."""

    kind = Kind.FATAL


class Poison(ReplicatorError):
    """One event or row the destination refuses for its content; it is set aside, the rest goes on."""

    kind = Kind.POISON


def listed(items: Sequence[str], first: int, sep: str) -> str:
    """The first ``first`` of ``items`` joined by ``sep``, then how many more there are: how an error
    or a status line names what it found. Pure."""
    more = f"{sep}... and {len(items) - first} more" if len(items) > first else ""
    return sep.join(items[:first]) + more


def kind_of(exc: BaseException) -> Kind:
    """The kind of any exception: ours carry it; anything else is fatal (never poison by default)."""
    return exc.kind if isinstance(exc, ReplicatorError) else Kind.FATAL


class ConfigError(Fatal):
    """A setting or flag is invalid (bad port, conflicting options)."""


class StackError(Fatal):
    """The local Kafka/Neo4j stack cannot be resolved, started, probed or stopped."""


class SchemaError(Poison):
    """Bytes do not decode with the expected schema (an event's content: the sink sets it aside), or
    an Avro schema is missing or invalid (at start, where the command stops on it like any error)."""


class ModelError(Fatal):
    """The embedding model cannot be loaded from the installed package."""
