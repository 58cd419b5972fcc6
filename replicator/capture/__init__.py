"""Capture: the changelog table and the triggers that fill it, installed into a live store.

The first step of the pipeline. Everything here runs inside the writer's own transactions (the
triggers) or in one short transaction of ours (install/uninstall); the writer's tables are never
altered and the writer never has to change.
"""
