"""Loaders for public LLM-serving and serverless traces, and the canonical store."""

from servetrace.loaders.ingest import ingest
from servetrace.loaders.store import Store

__all__ = ["Store", "ingest"]
