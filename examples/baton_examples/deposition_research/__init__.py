"""Deposition research: a bounded agent reads a transcript, its audio and case law, under a $50 gate per paid query."""
