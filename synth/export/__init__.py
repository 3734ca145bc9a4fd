"""Writers for the trace formats other tools replay; one module per format."""
