"""Crowd error analysis reports: console table, errors.json / errors.md / errors.png, per-image records."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .analysis import FP_CATEGORIES, MISS_CAUSES

__all__ = ["format_errors", "write_errors"]


_LINES = [("score threshold", lambda r: f"{r['score_threshold']:.4f}"), ("FPPI", lambda r: f"{r['fppi']:.3f}"),
          ("true positives", lambda r: r["tp"]), ("false positives", lambda r: r["fp"]),
          *[(f"  {name}", lambda r, n=name: r["fp_by_category"][n]) for name in FP_CATEGORIES],
          ("on ignore regions", lambda r: r["ignored"]), ("misses", lambda r: r["misses"]),
          *[(f"  {name}", lambda r, n=name: r["misses_by_cause"].get(n, 0)) for name in MISS_CAUSES],
          ("GT (npos)", lambda r: r["npos"])]


def _title(result: dict) -> str:
    return (f"Crowd error analysis of {result.get('class_name') or 'label ' + str(result['label'])} "
            f"({result['images']} images, {result['npos']} GT)")


def _cells(result: dict) -> tuple[list[str], list[list[str]]]:
    """Column heads (one per threshold) and rows of the counts table."""
    heads = [r["name"] + ("" if r["reached"] else " (not reached)") for r in result["thresholds"]]
    return heads, [[name] + [str(fmt(r)) for r in result["thresholds"]] for name, fmt in _LINES]


def format_errors(result: dict) -> str:
    """The counts table, a column per threshold, for the console."""
    heads, rows = _cells(result)
    width = max([len(h) for h in heads] + [8])
    lines = [_title(result), f"{'':22s}" + "".join(f" {h:>{width}s}" for h in heads)]
    return "\n".join(lines + [f"{row[0]:22s}" + "".join(f" {c:>{width}s}" for c in row[1:]) for row in rows])


def _markdown(result: dict) -> str:
    heads, rows = _cells(result)
    text = [f"# {_title(result)}", "",
            "| | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    return "\n".join(text + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _plot(result: dict, path: Path) -> None:
    """The paper's two panels: false positives per category against the score threshold (log y),
    misses by cause at each reported threshold (stacked bars)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    curves = result["curves"]
    for name, counts in curves["fp"].items():
        left.plot(curves["score_thresholds"], counts, label=name)
    if any(c > 0 for counts in curves["fp"].values() for c in counts):
        left.set_yscale("log", nonpositive="mask")
    left.set(xlabel="score threshold", ylabel="false positives (score >= threshold)", title="false positives")
    left.legend(fontsize=8)
    names, bottom = [r["name"] for r in result["thresholds"]], np.zeros(len(result["thresholds"]))
    for cause in MISS_CAUSES:
        counts = np.array([r["misses_by_cause"][cause] for r in result["thresholds"]], float)
        right.bar(names, counts, bottom=bottom, label=cause)
        bottom += counts
    right.set(ylabel=f"misses of {result['npos']} GT", title="misses by cause")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_errors(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write errors.json (all but the records), errors.md, errors.png and error_records.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "errors.json", "markdown": out / "errors.md", "plot": out / "errors.png",
             "records": out / "error_records.json"}
    paths["json"].write_text(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=1))
    paths["markdown"].write_text(_markdown(result))
    _plot(result, paths["plot"])
    paths["records"].write_text(json.dumps({"label": result["label"], "images": result["records"],
                                            "thresholds": [r["name"] for r in result["thresholds"]]}))
    return paths
