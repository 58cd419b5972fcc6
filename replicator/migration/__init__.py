"""``replicator migrate``: the whole migration of a store in one command, with an id and a history."""
