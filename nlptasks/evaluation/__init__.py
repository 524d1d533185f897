"""Evaluation: the one evaluation path, per-example statistics, bootstrap intervals."""
