"""Starting, finding and stopping the stack's server processes.

A server is identified by a pid file *and* a marker on its command line
(``-Dreplicator.stack=<name>@<root>``), so a stale pid file whose pid was reused by another program
is never taken for our server, and ``down`` only ever signals processes this stack started.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path


def marker(name: str, root: Path) -> str:
    return f"-Dreplicator.stack={name}@{root.resolve()}"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state is the field after the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it if it is our exited child."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def running_pid(pidfile: Path, mark: str) -> int | None:
    """The pid recorded in ``pidfile`` if that process is alive and carries ``mark``; else None.

    A pid file that fails either check is stale and is removed.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if is_alive(pid) and mark in _cmdline(pid):
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (a bind test, as the server itself would do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM servers, tolerate TIME_WAIT leftovers of our own previous run.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port_range(host: str, n: int, low: int = 20000, high: int = 32000) -> int:
    """The first of ``n`` consecutive ports free on ``host`` now, between ``low`` and ``high`` (below
    Linux's ephemeral range, so that no client connection takes one before a server binds it): for a
    stack beside another one, whose brokers take consecutive ports. Raises RuntimeError if none."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - n)
        if all(port_free(host, port) for port in range(base, base + n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports on {host} between {low} and {high}")


def spawn(cmd: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` detached (own session, so Ctrl-C in the caller's terminal does not reach it),
    output appended to ``log``; record its pid. Does not wait for it to be ready."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )  # fmt: skip
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def terminate(pid: int, timeout_s: float = 60.0) -> bool:
    """SIGTERM the process group led by ``pid`` and wait; SIGKILL it after ``timeout_s``.

    Blocks until the process is gone. Returns True if it stopped on SIGTERM (a clean shutdown).
    """
    return terminate_all([pid], timeout_s)[pid]


def terminate_all(pids: list[int], timeout_s: float = 60.0) -> dict[int, bool]:
    """``terminate`` for several process groups at once: all are signalled before any is waited for
    (the nodes of a KRaft quorum shut down cleanly only while a majority of them still runs).

    Blocks until every one is gone. Returns pid -> True if it stopped on SIGTERM."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    clean = {pid: False for pid in pids}
    while time.monotonic() < deadline and not all(clean.values()):
        for pid in pids:
            clean[pid] = clean[pid] or not is_alive(pid)
        time.sleep(0.2)
    for pid in pids:
        clean[pid] = clean[pid] or not is_alive(pid)
        if not clean[pid]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while is_alive(pid):
                time.sleep(0.1)
    return clean


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages; empty if there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
