"""Observe: how far each sink is behind (lag, from Kafka, the store and each destination's own
position), and the HTTP endpoint the daemons serve their metrics, health and position on."""
