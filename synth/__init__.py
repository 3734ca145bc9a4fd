"""Workload models fitted to traces, synthetic traces, and exports to other tools."""
