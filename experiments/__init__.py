"""Ablation configs and the runner (``python -m experiments.ablation``)."""
