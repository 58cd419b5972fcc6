"""Errors every part of the replicator raises: each names the problem and what to do about it."""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base error: a message that names what went wrong and a hint that says what to do next.

    The CLI prints both and exits non-zero; nothing else about the error is shown to the user, so the
    message must carry its context (which file, which port, which server).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(ReplicatorError):
    """A setting or flag is invalid (bad port, conflicting options)."""


class StackError(ReplicatorError):
    """The local Kafka/Neo4j stack cannot be resolved, started, probed or stopped."""


class SchemaError(ReplicatorError):
    """An Avro schema is missing or invalid, or bytes do not decode with the expected schema."""


class ModelError(ReplicatorError):
    """The embedding model cannot be loaded from the installed package."""
