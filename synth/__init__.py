"""Workload models fitted to traces, synthetic traces, and exports to other tools."""

from servetrace.synth.mix import Mix
from servetrace.synth.model import WorkloadModel, fit
from servetrace.synth.servegen_model import from_servegen

__all__ = ["Mix", "WorkloadModel", "fit", "from_servegen"]
