"""Governance: virtual keys, budgets and rate limits (issue 11), built as plugins on the hook contract."""
