"""Apache Kafka from Maven Central jars: one KRaft node, or several (``--brokers``), each a broker and a
controller voter in one JVM on 127.0.0.1, so that any one node may fail without stopping the cluster."""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from replicator.errors import StackError
from replicator.stack import maven
from replicator.stack.process import marker
from replicator.stack.service import Probe
from replicator.stack.settings import StackSettings
from replicator.stack.toolchain import Toolchain
from replicator.transport.settings import KafkaSettings, broker_limits, replication_for


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as ``kafka-storage random-uuid``).

    Like Kafka's own Uuid.randomUuid, never one starting with '-': the format tool would read it as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def cluster_properties(settings: StackSettings) -> dict[str, str]:
    """What every node of the stack's cluster shares: replication (``replication_for`` its size, as
    the replicator's own topics get it), and the broker-wide limits and defaults."""
    replication = replication_for(settings.brokers)
    factor, min_isr = str(replication.factor), str(replication.min_insync)
    return {
        # Kafka's internal topics, created on first use: consumer offsets, and the transaction log that
        # the source's exactly-once commits go through. A quorum of in-sync copies, as for the data.
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Topics created without explicit settings (by other tools) get the same.
        "default.replication.factor": factor,
        "min.insync.replicas": min_isr,
        # Never elect a replica that missed acknowledged writes (Kafka's default, stated: the source
        # deletes changelog rows once Kafka acknowledged them).
        "unclean.leader.election.enable": "false",
        # Consumers in tests and in the sinks join a group: do not make them wait 3 s for peers.
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        **broker_limits(settings.max_message_bytes),  # the clients' size setting, the same number
    }


def server_properties(settings: StackSettings, node: int, log_dirs: Path) -> str:
    """The broker+controller configuration of node ``node`` (1-based) on ``settings.host``: every node
    is a broker and a voter of the KRaft controller quorum."""
    h = settings.host
    voters = ",".join(f"{n}@{h}:{settings.kafka_controller_port + n - 1}" for n in range(1, settings.brokers + 1))
    client, controller = settings.kafka_port + node - 1, settings.kafka_controller_port + node - 1
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{h}:{client},CONTROLLER://{h}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{h}:{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs.resolve()),
        **cluster_properties(settings),
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def node_name(settings: StackSettings, node: int) -> str:
    """``kafka`` for a one-broker stack (its directory, pid file and marker), ``kafka-<n>`` otherwise."""
    return "kafka" if settings.brokers == 1 else f"kafka-{node}"


def _formatted_nodes(root: Path) -> set[str]:
    return {d.name for d in root.glob("kafka*") if (d / "data" / "meta.properties").exists()}


def check_layout(settings: StackSettings) -> None:
    """Refuse to start brokers over data formatted for another number of brokers (a KRaft quorum's
    voters are fixed when its storage is formatted). Raises StackError; harmless on a new root."""
    formatted = _formatted_nodes(settings.root)
    wanted = {node_name(settings, n) for n in range(1, settings.brokers + 1)}
    if formatted and formatted != wanted:
        found = len(formatted)
        raise StackError(
            f"Kafka's data under {settings.root} is formatted for {found} broker(s) ({', '.join(sorted(formatted))}); "
            f"asked for --brokers {settings.brokers}",
            hint=f"use another --dir for a {settings.brokers}-broker stack, or `replicator stack down` and remove "
            f"{', '.join(str(settings.root / n) for n in sorted(formatted))} to start from empty brokers",
        )


def cluster_id(root: Path) -> str:
    """The id every node of the stack under ``root`` is formatted with: made once, kept in a file."""
    path = root / "kafka-cluster.id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id() + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class KafkaServer:
    """One node of the stack's Kafka cluster (``node`` 1 to ``settings.brokers``)."""

    settings: StackSettings
    node: int = 1

    @property
    def name(self) -> str:
        return node_name(self.settings, self.node)

    @property
    def home(self) -> Path:
        return self.settings.root / self.name

    @property
    def endpoint(self) -> str:
        return f"{self.settings.host}:{self.settings.kafka_port + self.node - 1}"

    def ports(self) -> dict[str, int]:
        return self.settings.kafka_node_ports(self.node)

    def _jars(self) -> Path:
        return maven.jars_dir(self.settings.cache, "kafka", self.settings.kafka_version)

    def resolve(self, toolchain: Toolchain) -> bool:
        return maven.resolve(toolchain, self.settings.cache, "kafka", self.settings.kafka_version)[1]

    def command(self, toolchain: Toolchain) -> list[str]:
        data = self.home / "data"
        props = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        # Rewritten every start so that changed ports take effect; the cluster id lives in the data dir.
        props.write_text(server_properties(self.settings, self.node, data))
        cp = maven.classpath(self._jars())
        if not (data / "meta.properties").exists():
            fmt = [str(toolchain.java), "-cp", cp, "kafka.tools.StorageTool", "format", "--cluster-id",
                   cluster_id(self.settings.root), "--config", str(props), "--ignore-formatted"]  # fmt: skip
            proc = subprocess.run(fmt, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise StackError(
                    f"formatting Kafka's KRaft storage in {data} failed: {proc.stdout}{proc.stderr}".strip(),
                    hint=f"remove {data} to start from an empty broker",
                )
        return [
            str(toolchain.java), f"-Xmx{self.settings.kafka_heap_mb}m", "-Djava.awt.headless=true",
            marker(self.name, self.settings.root), "-cp", cp, "kafka.Kafka", str(props.resolve()),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {}

    def probe(self, timeout_s: float) -> Probe:
        """A metadata request to this node through librdkafka (what every client does first); it
        answers once the controller quorum registered it as a live broker."""
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - the client loads on a probe, not for --help

        client = KafkaSettings(bootstrap_servers=self.endpoint, client_id="replicator-stack", timeout_s=2.0)
        # log_level 0: refused connections while the broker boots are expected, not worth a log line each.
        admin = AdminClient({**client.common(), "log_level": 0})
        try:
            meta = admin.list_topics(timeout=timeout_s)
        except Exception as exc:
            return Probe(False, str(exc))
        if self.node not in meta.brokers:
            return Probe(False, f"node {self.node} is not a live broker of cluster {meta.cluster_id} yet")
        return Probe(True, f"cluster {meta.cluster_id}, {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)")
