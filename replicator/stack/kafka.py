"""Apache Kafka as a single KRaft node (broker and controller in one JVM) from Maven Central jars."""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from replicator.errors import StackError
from replicator.stack import maven
from replicator.stack.process import marker
from replicator.stack.service import Probe
from replicator.stack.settings import StackSettings
from replicator.stack.toolchain import Toolchain
from replicator.transport.settings import KafkaSettings, broker_limits


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as ``kafka-storage random-uuid``).

    Like Kafka's own Uuid.randomUuid, never one starting with '-': the format tool would read it as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(settings: StackSettings, log_dirs: Path) -> str:
    """The broker+controller configuration for one node on ``settings.host``."""
    h = settings.host
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{h}:{settings.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{h}:{settings.kafka_port},CONTROLLER://{h}:{settings.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{h}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs.resolve()),
        # One node: every internal topic must accept a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers in tests and in the sinks join a group: do not make them wait 3 s for peers.
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        **broker_limits(settings.max_message_bytes),  # the clients' size setting, the same number
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


@dataclass(frozen=True)
class KafkaServer:
    settings: StackSettings
    name: str = "kafka"

    @property
    def home(self) -> Path:
        return self.settings.root / self.name

    @property
    def endpoint(self) -> str:
        return self.settings.kafka_bootstrap

    def ports(self) -> dict[str, int]:
        return {
            "--kafka-port": self.settings.kafka_port,
            "--kafka-controller-port": self.settings.kafka_controller_port,
        }

    def _jars(self) -> Path:
        return maven.jars_dir(self.settings.cache, "kafka", self.settings.kafka_version)

    def resolve(self, toolchain: Toolchain) -> bool:
        return maven.resolve(toolchain, self.settings.cache, "kafka", self.settings.kafka_version)[1]

    def command(self, toolchain: Toolchain) -> list[str]:
        data = self.home / "data"
        props = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        # Rewritten every start so that changed ports take effect; the cluster id lives in the data dir.
        props.write_text(server_properties(self.settings, data))
        cp = maven.classpath(self._jars())
        if not (data / "meta.properties").exists():
            fmt = [str(toolchain.java), "-cp", cp, "kafka.tools.StorageTool", "format",
                   "--cluster-id", new_cluster_id(), "--config", str(props), "--ignore-formatted"]  # fmt: skip
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
        """A metadata request through librdkafka (what every client does first)."""
        client = KafkaSettings(bootstrap_servers=self.endpoint, client_id="replicator-stack", timeout_s=2.0)
        # log_level 0: refused connections while the broker boots are expected, not worth a log line each.
        admin = AdminClient({**client.common(), "log_level": 0})
        try:
            meta = admin.list_topics(timeout=timeout_s)
        except Exception as exc:
            return Probe(False, str(exc))
        return Probe(True, f"cluster {meta.cluster_id}, {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)")
