"""Timing models, one per target: instruction table -> cycles per instruction."""
