"""Bounded calls: cutover never lets a slow or hung server hold the store's writers past the pause."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from replicator.errors import Retryable

T = TypeVar("T")


class OutOfTime(Retryable):
    """A call did not return within the time it was given (what is left of the pause)."""


def within(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()``'s result if it returns within ``timeout_s``; raises OutOfTime otherwise, leaving it
    to finish (or fail) on a daemon thread whose result is dropped. Re-raises what ``call`` raised.
    This is the hard bound on every call made under the fence: clients' own timeouts are not
    trusted to cover connecting, retrying and reading together."""
    if timeout_s <= 0:
        raise OutOfTime(f"no time left for {what}")
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=work, name=f"cutover: {what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise OutOfTime(f"{what} did not answer within {timeout_s:.2f}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
