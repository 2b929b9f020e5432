"""Deterministic code only: the process engine (processes are built on it in packages: workflows/api.py)."""
