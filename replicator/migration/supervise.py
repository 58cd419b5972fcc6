"""The daemons ``migrate`` runs: ``source run``, ``sink neo4j``, ``sink qdrant``, each started with the
same ``--config`` as every command that inspects them (lag, cutover), so none can disagree about a
name. A daemon already answering on its configured health port is attached to, not started again.
Blocking; each child logs to its own file; ``stop`` sends SIGTERM (drain and commit), then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
        """SIGTERM, then SIGKILL after ``grace_s`` (``stop_all`` of this one). Raises KeyboardInterrupt."""
        interrupt = stop_all([self], grace_s)
        if interrupt is not None:
            raise interrupt

    def tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def handle_interrupts() -> None:
    """Make Ctrl-C (SIGINT) and a supervisor's stop (SIGTERM) raise KeyboardInterrupt in this
    process's main thread, whatever dispositions it inherited: a script that starts a job with ``&``
    starts it with SIGINT ignored (Python then leaves it ignored: a Ctrl-C or ``kill -INT`` did
    nothing and the migration went on to switch caxton.yaml), and SIGTERM's default ends the process at
    once, its daemons (each in its own session) left running and its record "running". Interrupted,
    migrate stops its command and daemons in order and records where. Call from the main thread."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def stop_all(children: list[Child], grace_s: float = 30.0) -> KeyboardInterrupt | None:
    """Stop every started daemon: SIGTERM to all first (each drains and commits), then wait for each,
    SIGKILL after ``grace_s``. An interrupt meanwhile (a second Ctrl-C) kills those still draining at
    once, which their exactly-once positions allow, and is returned, not raised: no daemon is left
    running behind migrate, and a caller whose migration is done still reports it. Blocks."""
    started = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in started:
        process.send_signal(signal.SIGTERM)
    interrupt: KeyboardInterrupt | None = None
    for process in started:
        try:
            process.wait(grace_s)  # returns at once for those an interrupt already killed
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        except KeyboardInterrupt as exc:
            interrupt = exc
            for left in started:
                if left.poll() is None:
                    left.kill()
            process.wait(10)
    return interrupt


def run_command(argv: list[str], timeout_s: float, answer: str = "") -> subprocess.CompletedProcess[str]:
    """``replicator <argv>`` to its end (output captured; ``answer`` is its standard input, e.g. the
    operator's yes migrate already got). Blocks. Raises subprocess.TimeoutExpired (the command killed).

    An interrupt (KeyboardInterrupt: Ctrl-C reaches migrate; the command runs in its own session, so
    it gets the signal from here, once) is passed on to the command as SIGINT and its end waited for,
    then raised again. A cutover interrupted so releases its fence and records how it ended; killed,
    it could do neither (``subprocess.run`` kills 0.25 s after an interrupt)."""
    args = [sys.executable, "-m", "replicator", *argv]
    deadline = time.monotonic() + timeout_s
    interrupt: KeyboardInterrupt | None = None
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:  # fmt: skip
        pending: str | None = answer  # the input goes once: communicate refuses it on a second call
        while True:
            try:
                out, err = process.communicate(pending, timeout=max(0.0, deadline - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise
            except KeyboardInterrupt as exc:
                pending = None
                if interrupt is None and process.poll() is None:
                    process.send_signal(signal.SIGINT)
                interrupt = exc
    if interrupt is not None:
        raise interrupt
    return subprocess.CompletedProcess(args, process.returncode, out, err)
