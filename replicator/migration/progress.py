"""How ``migrate`` shows progress: a tqdm bar per phase on a terminal, plain lines otherwise (a log,
a CI job), at most one per phase every ``every_s`` seconds and always the last one."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """``update(label, done, total)`` from one thread. ``close`` ends the bars."""

    def __init__(self, out: TextIO | None = None, *, every_s: float = 2.0, terminal: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.terminal = self.out.isatty() if terminal is None else terminal
        self.every_s = every_s
        self._bars: dict[str, Any] = {}
        self._shown: dict[str, float] = {}

    def update(self, label: str, done: int, total: int) -> None:
        if self.terminal:
            self._bar(label, done, total)
            return
        now = time.monotonic()
        if done < total and now - self._shown.get(label, -self.every_s) < self.every_s:
            return
        self._shown[label] = now
        share = f"{100 * done / total:5.1f}%" if total else "  100%"
        print(f"  {label:<22} {done:>9} / {total:<9} {share}", file=self.out, flush=True)

    def _bar(self, label: str, done: int, total: int) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]  # noqa: PLC0415 - only on a terminal

        bar = self._bars.get(label)
        if bar is None:
            bar = self._bars[label] = tqdm(total=total, desc=label, unit="rows", file=self.out, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def line(self, text: str) -> None:
        if self._bars:  # above the open bars, not through them
            from tqdm import tqdm  # noqa: PLC0415

            tqdm.write(text, file=self.out)
            return
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
