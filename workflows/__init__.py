"""Deterministic code only: the process engine and the processes built on it."""
