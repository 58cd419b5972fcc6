"""Errors of the migration tools (export, import, stats, diff, validate, repair)."""

from __future__ import annotations

from replicator.errors import Fatal


class MigrateError(Fatal):
    """A migration tool cannot do what was asked (bad file, unreachable backend, refused import)."""
