"""Migration: lag, validation, cutover and rollback, and the tools around them (export, import,
stats, diff, validate). See docs/design.md and docs/validation.md."""
