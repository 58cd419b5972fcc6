"""Cut over: fence the store's writers, drain the sinks, validate, switch ``caxton.yaml``; and roll
back. The sinks as cutover sees them (targets), the recorded state, the bounded calls (README,
"Cutover and rollback")."""
