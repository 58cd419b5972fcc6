"""Bounded calls: cutover never lets a slow or hung server hold the store's writers past the pause."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
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


def within_each(calls: Mapping[str, Callable[[], T]], timeout_s: float, what: str) -> dict[str, T | BaseException]:
    """Every call of ``calls`` at once, each on its own daemon thread, all within ``timeout_s``: per
    name, the result, what the call raised, or OutOfTime (left to finish on its thread, its result
    dropped). Cutover's reads of several destinations under the fence cost the slowest, not the sum."""
    deadline = time.monotonic() + timeout_s
    outcomes: dict[str, list[Any]] = {name: [] for name in calls}
    finished = {name: threading.Event() for name in calls}

    def work(name: str, call: Callable[[], T]) -> None:
        try:
            outcomes[name].append(call())
        except BaseException as exc:  # handed to the caller's thread
            outcomes[name].append(exc)
        finally:
            finished[name].set()

    if timeout_s > 0:
        for name, call in calls.items():
            threading.Thread(target=work, args=(name, call), name=f"cutover: {what} {name}", daemon=True).start()
    result: dict[str, T | BaseException] = {}
    for name in calls:
        if timeout_s > 0 and finished[name].wait(max(0.0, deadline - time.monotonic())):
            result[name] = outcomes[name][0]
        else:
            result[name] = OutOfTime(f"{name}'s {what} did not answer within {timeout_s:.2f}s")
    return result
