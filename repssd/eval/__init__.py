"""Evaluation: VOC AP, crowd-subset AP."""
