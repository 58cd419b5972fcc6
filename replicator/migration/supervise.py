"""The daemons ``migrate`` runs: ``source run``, ``sink neo4j``, ``sink qdrant``, each started with the
same ``--config`` as every command that inspects them (lag, cutover), so none can disagree about a
name. A daemon already answering on its configured health port is attached to, not started again.
Blocking; each child logs to its own file; ``stop`` sends SIGTERM (drain and commit), then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def answers(port: int | None) -> bool:
    """Whether something serves ``/healthz`` on 127.0.0.1:``port`` (any HTTP status: it is up)."""
    if port is None:
        return False
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@dataclass
class Child:
    """One daemon. ``process`` is None when attached to one that was already running."""

    name: str
    argv: list[str]
    log: Path
    port: int | None
    process: subprocess.Popen[bytes] | None = None
    attached: bool = False
    #: What runs ``argv``: this interpreter's ``replicator`` (a test gives another program).
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "replicator"])

    def start(self) -> None:
        """Start it, unless one answers on its port already (then attach)."""
        if answers(self.port):
            self.attached = True
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*self.command, *self.argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a Ctrl-C reaches migrate, which stops its children in order
            )  # fmt: skip

    def exited(self) -> int | None:
        """The exit code of a child that stopped by itself, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, grace_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def run_command(argv: list[str], timeout_s: float, answer: str = "") -> subprocess.CompletedProcess[str]:
    """``replicator <argv>`` to its end (output captured; ``answer`` is its standard input, e.g. the
    operator's yes migrate already got). Raises subprocess.TimeoutExpired."""
    return subprocess.run([sys.executable, "-m", "replicator", *argv], capture_output=True, text=True,
                          timeout=timeout_s, check=False, input=answer)  # fmt: skip
