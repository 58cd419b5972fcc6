"""What a qdrant-client error means for the sink: retry, stop this sink, or an event to isolate.

Server mode answers HTTP; local mode (``QdrantClient(path=...)``) raises in-process:

* no answer (connection refused, timeout, a broken response) or HTTP 408/425/429/5xx: **retryable**;
* HTTP 401/403 (API key missing, rotated or without rights), HTTP 404 and local mode's ``Collection
  ... not found`` (the collection was dropped or never created), any other status and anything
  unexpected: **fatal for the sink** (nothing about it depends on the events);
* HTTP 400/413/422 and local mode's other ``ValueError``/``KeyError`` (a vector of the wrong size, a
  NaN, a payload it cannot store): **may be the data**, so the runner isolates the event and sets it
  aside only once the rest of its batch applies.

A one-shot command (``sink qdrant reembed``) that meets the same errors ends with them (exit 2): given
``command``, the hints say to run it again, and what the sink would set aside as one event's data is
a refusal (a command has no event to set aside).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from replicator.errors import ReplicatorError
from replicator.sinks.errors import DestinationRefused, DestinationUnavailable, PoisonEvent

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_DATA_STATUS = frozenset({400, 413, 422})
_LOCAL_MISSING = re.compile(r"^Collection (?P<name>\S+) not found")
_RECHECK = "the sink re-checks and resumes by itself, committing nothing meanwhile"


def _next_step(command: str | None, sink: str = _RECHECK) -> str:
    """What follows a failure: ``sink`` for the sink, running ``command`` again for a one-shot command."""
    return sink if command is None else f"then run `{command}` again"


def translate(exc: BaseException, what: str, where: str, command: str | None = None) -> ReplicatorError:
    """``exc`` (raised while doing ``what`` against ``where``, a URL or path) as the sink error of its
    kind, or with ``command`` as that one-shot command's (module doc). Pure."""
    if isinstance(exc, ReplicatorError):
        return exc
    again = _next_step(command)
    if isinstance(exc, httpx.TransportError | ResponseHandlingException | ConnectionError | TimeoutError):
        return DestinationUnavailable(
            f"Qdrant at {where} did not answer while {what}: {exc!r}",
            hint="check that the server is up and reachable (URL, network); "
            + _next_step(command, "the batch is retried"),
        )
    if isinstance(exc, UnexpectedResponse):
        return _status(exc, what, where, command)
    if isinstance(exc, ValueError | KeyError):
        missing = _LOCAL_MISSING.match(str(exc))
        if missing:
            return missing_collection(missing["name"], what, where, command=command)
        return _data(f"Qdrant (local, {where}) refused {what}: {exc}", command)
    return DestinationRefused(
        f"Qdrant at {where} failed while {what}: {type(exc).__name__}: {exc}", hint=f"fix what it names; {again}"
    )


def _data(message: str, command: str | None) -> ReplicatorError:
    """A refusal that may be one event's data: the sink's to set aside, or the command's end."""
    if command is None:
        return PoisonEvent(None, message)
    return DestinationRefused(message, hint=f"fix what it names; {_next_step(command)}")


def _status(exc: UnexpectedResponse, what: str, where: str, command: str | None) -> ReplicatorError:
    status, said = exc.status_code, f"{exc.status_code} {exc.reason_phrase} {exc.content[:300]!r}"
    again = _next_step(command)
    if status in _RETRYABLE_STATUS:
        return DestinationUnavailable(
            f"Qdrant at {where} answered {status} while {what}",
            hint="the server is overloaded or restarting; " + _next_step(command, "the batch is retried"),
        )
    if status in (401, 403):
        return DestinationRefused(
            f"Qdrant at {where} refused the API key while {what}: {said}",
            hint=f"give a valid key with write rights (--api-key-file / REPLICATOR_QDRANT_API_KEY); {again}",
        )
    if status == 404:
        return missing_collection(None, what, where, said, command=command)
    if status in _DATA_STATUS:
        return _data(f"Qdrant at {where} refused {what}: {said}", command)
    return DestinationRefused(f"Qdrant at {where} answered {said} while {what}", hint=f"fix what it names; {again}")


def missing_collection(
    name: str | None, what: str, where: str, said: str = "", *, command: str | None = None
) -> DestinationRefused:
    """The collection ``name`` (None: the server did not say which) is gone: fatal, with both fixes
    for the sink; for a one-shot ``command``, check its collection name."""
    collection = f"collection {name!r}" if name else "a collection"
    detail = f": {said}" if said else ""
    if command is not None:
        return DestinationRefused(
            f"Qdrant at {where}: {collection} does not exist while {what}{detail}",
            hint=f"check --collection (the name the Qdrant sink writes); {_next_step(command)}",
        )
    return DestinationRefused(
        f"Qdrant at {where}: {collection} does not exist (dropped under the sink?) while {what}{detail}",
        hint="restore it from a snapshot; or, to rebuild it from the change topics, delete its "
        f"<collection>_positions collection too (the sink then starts over from offset 0); {_RECHECK}",
    )


@contextmanager
def qdrant_errors(what: str, where: str, command: str | None = None) -> Iterator[None]:
    """Raise any failure while doing ``what`` against ``where`` as the sink error of its kind (with
    ``command``: as that one-shot command's, module doc)."""
    try:
        yield
    except Exception as exc:
        raise translate(exc, what, where, command) from exc
