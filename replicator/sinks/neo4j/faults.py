"""What a Neo4j driver error means for the sink: retry, stop this sink, or an event to isolate.

Sorted by the server's status code (``Neo.<Classification>.<Category>.<Title>``), which says whose
fault it is, before the driver's exception class:

* ``Neo.TransientError.*``, anything the driver calls retryable, ``Neo.ClientError.Cluster.*``,
  ``Neo.DatabaseError.*``, a lost connection or session: **retryable**. (The driver raises a
  terminated transaction, ``Neo.TransientError.Transaction.Terminated``, as the ClientError
  ``Neo.ClientError.Transaction.Terminated``; it is still retried: the batch did nothing wrong.)
* ``Neo.ClientError.Security.*`` (password wrong, changed or expired, too many failed logins, a
  privilege revoked), ``Neo.ClientError.Database.*`` (database missing, stopped), a driver
  misconfiguration, and every other ClientError: **fatal for the sink**. None depends on the events.
* ``Neo.ClientError.Statement.*`` (a value of the wrong type, an argument out of range, a relationship
  type built from the data), ``Neo.ClientError.Schema.ConstraintValidationFailed``,
  ``Neo.ClientError.Request.*`` and transaction timeouts (a batch too big): **may be the data**, so the
  runner isolates the event and sets it aside only once the rest of its batch applies.
"""

from __future__ import annotations

from neo4j.exceptions import ConfigurationError, DatabaseError, DriverError, Neo4jError

from replicator.errors import Kind, ReplicatorError
from replicator.sinks.errors import DestinationRefused, DestinationUnavailable, PoisonEvent
from replicator.sinks.settings import Neo4jSettings

_DATA_CODES = (
    "Neo.ClientError.Statement.",
    "Neo.ClientError.Schema.ConstraintValidationFailed",
    "Neo.ClientError.Request.",
    "Neo.ClientError.Transaction.TransactionTimedOut",
)
_NEVER_DATA = ("Neo.ClientError.Statement.AccessMode",)  # a write routed to a reader: the setup's fault
# The server's Neo.TransientError.Transaction.Terminated / LockClientStopped, renamed by the driver so
# that it does not retry what someone terminated; the batch itself did nothing wrong.
_TERMINATED = ("Neo.ClientError.Transaction.Terminated", "Neo.ClientError.Transaction.LockClientStopped")


def kind(exc: BaseException) -> Kind:
    """The kind of any exception raised while talking to Neo4j. Pure."""
    if isinstance(exc, ReplicatorError):
        return exc.kind
    if isinstance(exc, Neo4jError):
        return _kind_of_code(exc.code or "", exc.is_retryable(), isinstance(exc, DatabaseError))
    if isinstance(exc, ConfigurationError):
        return Kind.FATAL
    if isinstance(exc, DriverError | OSError):  # no server, connection lost, pool exhausted, session gone
        return Kind.RETRYABLE
    return Kind.FATAL


def _kind_of_code(code: str, retryable: bool, server_fault: bool) -> Kind:
    if retryable or server_fault or code.startswith(("Neo.TransientError.", "Neo.ClientError.Cluster.", *_TERMINATED)):
        return Kind.RETRYABLE
    if code.startswith(_DATA_CODES) and not code.startswith(_NEVER_DATA):
        return Kind.POISON
    return Kind.FATAL


def _fix(code: str, settings: Neo4jSettings) -> str:
    """What an operator does about a fatal code."""
    user, database = settings.user, settings.database
    if code in ("Neo.ClientError.Security.Unauthorized", "Neo.ClientError.Security.AuthenticationRateLimit"):
        return (
            f"set the password of user {user!r} on the server back to the one the sink has (ALTER USER {user} "
            "SET PASSWORD ...), or restart the sink with the new one (REPLICATOR_NEO4J_PASSWORD or --password-file)"
        )
    if code == "Neo.ClientError.Security.CredentialsExpired":
        return f"the password of {user!r} must be changed: ALTER USER {user} SET PASSWORD '...' CHANGE NOT REQUIRED"
    if code.startswith("Neo.ClientError.Security."):
        return f"grant user {user!r} read and write on database {database!r} (or run the sink as a user who has them)"
    if code.startswith("Neo.ClientError.Database."):
        return f"create or start database {database!r} (CREATE DATABASE / START DATABASE), or fix --database"
    return "fix what the server names"


def _parts(exc: BaseException, settings: Neo4jSettings) -> tuple[str, str, str]:
    """Which server (and as whom), the server's code, and what it said."""
    where = f"Neo4j at {settings.uri} (user {settings.user!r}, database {settings.database!r})"
    code = exc.code or "" if isinstance(exc, Neo4jError) else ""
    said = f"{code}: {getattr(exc, 'message', None) or exc}" if code else f"{type(exc).__name__}: {exc}"
    return where, code, said


def describe(exc: BaseException, settings: Neo4jSettings) -> tuple[str, str]:
    """``exc`` for a command that is not the sink (check, tune, watch): what the server said, naming
    it, and the operator's fix. Pure."""
    where, code, said = _parts(exc, settings)
    if kind(exc) is Kind.RETRYABLE:
        return f"{where} is unavailable: {said}", "check that the server is up (`replicator stack status`)"
    return f"{where} refused: {said}", _fix(code, settings)


def translate(exc: BaseException, settings: Neo4jSettings) -> ReplicatorError:
    """``exc`` as the sink error of its kind, naming the server, user and database. Pure."""
    if isinstance(exc, ReplicatorError):
        return exc
    where, code, said = _parts(exc, settings)
    found = kind(exc)
    if found is Kind.RETRYABLE:
        return DestinationUnavailable(
            f"{where} is unavailable: {said}",
            hint="the sink retries with backoff; check the server (`replicator stack status`) if it lasts",
        )
    if found is Kind.POISON:
        return PoisonEvent(None, f"{where} refused a value of the batch: {said}")
    return DestinationRefused(
        f"{where} refuses the sink's work: {said}",
        hint=f"{_fix(code, settings)}; the sink re-checks and resumes by itself, committing nothing meanwhile",
    )
