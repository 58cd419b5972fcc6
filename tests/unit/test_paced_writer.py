"""The agents' writer loop (replicator/testing/paced.py) that the reverse-rollback tests and
bench/rollback_pause.py count on: each outcome lands in its own count, a stalled writer does not
burst, and waiting on writers ends at a failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from replicator.testing.mcp_agent import McpAgent
from replicator.testing.paced import PacedWriter, Unavailable, Writers

REFUSED = "ClientError: memory store moved back to embedded at 12:00; reload caxton.yaml"
LOST = "ClientError: {neo4j_code: Neo.ClientError.Statement.EntityNotFound} {message: Unable to load NODE 4}"


class Scripted(PacedWriter):
    """Answers from a script, then refusals (a fenced server)."""

    def __init__(self, script: list[str | Exception | None], rate_per_s: float = 1000.0) -> None:
        super().__init__(rate_per_s, seed=1)
        self.script: Iterator[str | Exception | None] = iter(script)

    def _write(self) -> str | None:
        outcome = next(self.script, REFUSED)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _run(writer: PacedWriter, until: int) -> None:
    writers = Writers(writer)
    writers.start()
    deadline = time.monotonic() + 10
    while writer.refused < until and time.monotonic() < deadline:
        time.sleep(0.01)
    writers.stop()


def test_each_outcome_is_counted_apart_and_only_the_fence_counts_as_refused() -> None:
    writer = Scripted([None, LOST, None, "ClientError: something else", None])
    _run(writer, until=2)
    assert (writer.done, writer.lost_races, writer.failures) == (3, 1, ["ClientError: something else"])
    assert writer.refused >= 2 and writer.refusal == REFUSED
    assert writer.rate() > 0


def test_an_unavailable_server_is_an_error_to_wait_out_not_a_write() -> None:
    writer = Scripted([Unavailable("restarting"), None])
    _run(writer, until=1)
    assert (writer.errors, writer.done, writer.failures) == (1, 1, [])


def test_a_writer_never_writes_faster_than_its_rate() -> None:
    writer = Scripted([None] * 1000, rate_per_s=50.0)
    writers = Writers(writer)
    began = time.monotonic()
    writers.start()
    time.sleep(0.5)
    writers.stop()
    ran = time.monotonic() - began  # the writer's whole life lies within: a bound that holds under any load
    assert 0 < writer.done <= ran * 50 + 1, (writer.done, ran)


def test_waiting_for_writes_ends_at_the_first_failure() -> None:
    writers = Writers(Scripted(["ClientError: broken"] * 1000, rate_per_s=100.0))
    writers.start()
    began = time.monotonic()
    try:
        assert writers.wait_for(10, timeout_s=30) is False
    finally:
        writers.stop()
    assert time.monotonic() - began < 10 and writers.failures()[0] == "ClientError: broken"


class Session:
    """mcp-neo4j-memory's answers, scripted: Neo4j away, then starting, a write, then the fence."""

    def __init__(self) -> None:
        self.answers: Iterator[dict[str, Any]] = iter([
            {"error": "ServiceUnavailable: Couldn't connect to 127.0.0.1:7687"},
            {"error": "TransientError: {neo4j_code: Neo.TransientError.General.DatabaseUnavailable}"},
            {"ok": None},
        ])  # fmt: skip
        self.calls: list[str] = []
        self.closed = False

    def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(tool)
        return next(self.answers, {"error": f"ClientError: {REFUSED}"})

    def close(self) -> None:
        self.closed = True


def test_an_mcp_agent_waits_out_neo4j_away_counts_the_fence_and_closes_its_session() -> None:
    session = Session()
    agent = McpAgent(session, [], seed=3, rate_per_s=1000.0, prefix="agent t")
    _run(agent, until=1)
    assert (agent.errors, agent.done, agent.failures) == (2, 1, [])
    assert agent.refused >= 1 and REFUSED in agent.refusal
    assert session.calls[0] == "create_entities" and session.closed
