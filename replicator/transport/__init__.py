"""Transport: Kafka topics carrying the Avro change events between the source and the sinks."""
