"""Around the move: when to migrate (assess) and tuning after it (tune), as the seed guide describes."""
