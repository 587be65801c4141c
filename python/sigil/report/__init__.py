"""Replay results and the variant table."""
