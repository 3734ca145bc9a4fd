"""Characterization of canonical tables (burstiness, tokens, cold starts, fairness)."""
