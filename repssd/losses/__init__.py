"""Loss terms and criteria: ``build_criterion("multibox+repgt+repbox")``.

Registered terms (one import line each below is all it takes to add one):

- ``multibox``: SSD's MultiBox loss -> ``loc``, ``conf``
- ``repgt``: Repulsion Loss RepGT term -> ``repgt``
- ``repbox``: Repulsion Loss RepBox term -> ``repbox``
"""
from . import multibox, repulsion  # noqa: F401  (each module registers its terms)
from .base import TERMS, LossContext, LossTerm, Positives, register, smooth_ln
from .criterion import Criterion, build_criterion, parse_weights

__all__ = ["TERMS", "LossContext", "LossTerm", "Positives", "register", "smooth_ln", "Criterion",
           "build_criterion", "parse_weights"]
