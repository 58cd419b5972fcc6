"""The source daemon: snapshot the store once, then stream its changelog into Kafka, exactly once.

Modules: ``settings`` (frozen, validated settings from flags, env and a config file), ``convert``
(pure: changelog rows and snapshot rows -> Kafka messages), ``store`` (reads of the store and the
short-timeout delete of published changelog rows), ``kafka`` (topics, positions, the transactional
producer), ``daemon`` (the loop), ``metrics`` (/metrics and /healthz), ``cli`` (``replicator source``).
"""
