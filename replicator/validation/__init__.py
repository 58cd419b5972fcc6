"""Validation: does a destination hold what the store holds? The store's reader, the value model both
sides are read into, the comparison (diff), search consistency, repair and ``validate`` (docs/validation.md)."""
