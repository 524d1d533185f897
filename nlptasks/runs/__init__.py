"""Runs and results: the run directory, results.json, model cards, and the tools that read
finished runs (compare, leaderboard, verify, export)."""
