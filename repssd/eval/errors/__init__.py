"""Crowd error analysis (Repulsion Loss paper, Sec. 3): :mod:`.analysis` splits false positives
and misses by kind, :mod:`.report` writes them, :mod:`.cli` is ``python -m repssd.eval.errors``."""
from .analysis import CATEGORIES, CAUSES, FP_CATEGORIES, MISS_CAUSES, analyse, image_counts
from .cli import main
from .report import format_errors, write_errors

__all__ = ["analyse", "image_counts", "format_errors", "write_errors", "main", "CATEGORIES", "CAUSES", "FP_CATEGORIES", "MISS_CAUSES"]
