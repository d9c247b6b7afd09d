"""repssd: crowd-aware SSD with plug-in Repulsion Loss terms and crowd-subset evaluation."""

__version__ = "0.1.0"
