"""The offline guardrail detectors: each module exposes `build(config, path, warnings, timeout_s)`
(runtime/guardrails/kinds.py names them) returning a detector whose `scan(subject)` reports spans only."""
