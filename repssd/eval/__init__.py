"""Evaluation: VOC AP, crowd-subset AP, COCO AP, CrowdHuman AP / MR^-2 / JI, reports."""
from .evaluator import METRICS, DetectionEvaluator
from .report import format_table, write_report

__all__ = ["DetectionEvaluator", "METRICS", "format_table", "write_report"]
