"""Support triage: a classifier routes each ticket to one bounded agent (returns, technical, billing)."""
