"""The local development stack: real Apache Kafka (KRaft) and Neo4j Community, without Docker.

Jars come from Maven Central through the machine's Maven into a cache shared by every checkout;
data, logs and pid files live in one project-local directory (``.stack/`` by default). Entry points
are in ``control`` (up / down / status), driven by ``replicator stack``.
"""
