"""Datasets, transforms and class lists."""
from .classes import VOC_CLASSES

__all__ = ["VOC_CLASSES"]
