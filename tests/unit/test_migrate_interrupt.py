"""Ctrl-C during ``migrate``. The cutover is one of migrate's commands: interrupted, it releases its
fence and records how it ended, so it must be asked to stop and waited for, never killed. Before,
``subprocess.run`` killed a command 0.25 s after migrate's KeyboardInterrupt: a cutover killed so
left its record "cutting_over" with a dead pid (``status``: "its process is gone"), and when the
switch step had begun, a store refusing writes until ``rollback``. An interrupt while a completed
migration stops its daemons printed "aborted" (exit 130) for a migration whose caxton.yaml was
switched. Each case runs in its own interpreter started with SIGINT ignored, as a script's ``&``
starts a job (CI ran the suite so, and the interrupt tests did nothing there before migrate set its
own handlers): the interrupt is a real SIGINT to its main thread."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: A command that, interrupted, takes 0.8 s to clean up (as a cutover releasing its fence), records
#: it, and exits 130; uninterrupted it would run for 30 s.
COMMAND = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    marker = Path(sys.argv[1])
    def cleanup(*_):
        time.sleep(0.8)
        marker.write_text("cleaned up")
        sys.exit(130)
    signal.signal(signal.SIGINT, cleanup)
    print("started", flush=True)
    time.sleep(30)
""")

#: Runs ``run_command`` (``python -m replicator <marker>``, where a stand-in package on PYTHONPATH
#: is COMMAND) and sends itself SIGINT (as a terminal's Ctrl-C reaches migrate) once it has started.
DRIVER = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from pathlib import Path
    from replicator.migration.supervise import handle_interrupts, run_command
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `&` starts a job
    handle_interrupts()  # as migrate does first
    marker, stand_in = Path(sys.argv[1]), sys.argv[2]
    os.environ["PYTHONPATH"] = stand_in  # the command's `-m replicator` is COMMAND; this process has the real one
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    try:
        run_command([str(marker)], 60)
        outcome = "returned"
    except KeyboardInterrupt:
        outcome = "interrupted"
    print(json.dumps({"outcome": outcome, "marker": marker.exists(), "s": time.monotonic() - started}))
""")


def test_an_interrupted_command_is_asked_to_stop_and_waited_for_then_the_interrupt_goes_on(tmp_path: Path) -> None:
    marker, stand_in = tmp_path / "cleaned", tmp_path / "stand-in"
    (stand_in / "replicator").mkdir(parents=True)
    (stand_in / "replicator" / "__init__.py").write_text("")
    (stand_in / "replicator" / "__main__.py").write_text(COMMAND)
    done = subprocess.run([sys.executable, "-c", DRIVER, str(marker), str(stand_in)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["marker"], f"the command was killed before its clean-up ran: {result}"
    assert result["outcome"] == "interrupted", result  # migrate records the interruption after it
    assert result["s"] < 20, result  # it ended when the command did, not at the command's 30 s


#: A daemon that, asked to stop (SIGTERM), takes 1.5 s to drain; it says when it is ready.
DAEMON = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    def drain(*_):
        time.sleep(1.5)
        sys.exit(0)
    signal.signal(signal.SIGTERM, drain)
    Path(sys.argv[-1]).write_text("ready")
    while True:
        time.sleep(0.1)
""")

#: A live migration whose steps are done (capture, catch-up and cutover stand-ins) with two daemons;
#: Ctrl-C arrives while it stops them.
TEARDOWN = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from pathlib import Path
    from replicator.config import MigrationConfig
    from replicator.config.model import Neo4jConfig
    from replicator.migration import history
    from replicator.migration.live import Live, LivePlan, LiveReport
    from replicator.migration.supervise import Child, handle_interrupts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `&` starts a job
    handle_interrupts()  # as migrate does first
    tmp, daemon = Path(sys.argv[1]), sys.argv[2]
    config = MigrationConfig(neo4j=Neo4jConfig())  # two daemons: the source and the Neo4j sink
    plan = LivePlan(tmp / "replicator.yaml", config, tmp / "memory.db", tmp / "caxton.yaml")
    migration = history.Migration(history.new_id(), "live", "hybrid", "replicator.yaml")
    lines = []
    live = Live(plan, migration, log=lines.append, wait_for_go=lambda: True)
    live.launch = lambda name, argv, log, port: Child(name, [str(tmp / name)], log, None,
                                                      command=[sys.executable, "-c", daemon])
    live.install = lambda: None
    def attempts():
        while not all((tmp / c.name).exists() for c in live.children):
            time.sleep(0.05)
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()  # while stopping them
        return LiveReport(migration.id, "hybrid", ok=True, text="done")
    live._attempts = attempts
    try:
        outcome = live.run().text
    except KeyboardInterrupt:
        outcome = "interrupted"
    print(json.dumps({"outcome": outcome, "running": [c.name for c in live.children if c.exited() is None],
                      "state": history.load_all(plan.db)[migration.id].state, "log": lines}))
    for child in live.children:  # none is left behind by this test, whatever it found
        if child.process is not None and child.process.poll() is None:
            child.process.kill()
""")


def test_an_interrupt_while_a_done_migration_stops_its_daemons_still_reports_it_done_and_stops_them_all(
    tmp_path: Path,
) -> None:
    done = subprocess.run([sys.executable, "-c", TEARDOWN, str(tmp_path), DAEMON], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["running"] == [], f"a daemon was left running (never asked to stop) after migrate: {result}"
    assert result["state"] == "done", result
    assert result["outcome"] == "done", f"the report of a switched migration was lost to the interrupt: {result}"
