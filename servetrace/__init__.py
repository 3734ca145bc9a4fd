"""servetrace: load, characterize and synthesize public LLM-serving and serverless traces.

One import package. ``servetrace.loaders`` (datasets and the store), ``servetrace.analysis``
(characterization) and ``servetrace.synth`` (workload models, exports, replay) live in the
repository's top-level folders of those names; ``servetrace.cli`` is the command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("servetrace")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
