"""Loaders for public LLM-serving and serverless traces, and the canonical store."""

from loaders.ingest import ingest
from loaders.store import Store

__all__ = ["Store", "ingest"]
