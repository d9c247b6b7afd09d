"""Tables, selection and comparisons of the ablation runner (``experiments.ablation``)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from repssd.eval.bootstrap import paired_bootstrap, paired_count_bootstrap

__all__ = ["summarise", "select_finalists", "compare_final", "markdown", "plot"]

METRICS = ("map", "crowd_map", "person_ap", "person_mr")


def _mean_std(values) -> dict:
    """Mean and sample std; a metric that does not apply (None, e.g. crowd mAP without crowds) is NaN."""
    values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarise(runs: list[dict], cells: list[str], config: dict) -> dict:
    """Per cell: mean and standard deviation over seeds of every metric, per-class AP means, and
    the paired difference from the baseline over the seeds both have."""
    table = {}
    by_cell = {cell: {r["seed"]: r for r in runs if r["cell"] == cell} for cell in cells}
    base = by_cell.get(config["baseline"], {})
    for cell, mine in by_cell.items():
        if not mine:
            continue
        shown = ("loss", "loss_options", "loss_weights", "loss_warmup", "ignore_regions")
        row = {"seeds": sorted(mine), **{k: config["cells"][cell].get(k, "") for k in shown},
               "other": {k: v for k, v in config["cells"][cell].items() if k not in shown}}
        for key in METRICS:
            row[key] = _mean_std([r[key] for r in mine.values()])
        if all("person_ji" in r for r in mine.values()):  # runs scored before JI was recorded lack it
            row["person_ji"] = _mean_std([r["person_ji"] for r in mine.values()])
        classes = sorted({c for r in mine.values() for c in r["ap"]})
        row["ap"] = {c: float(np.mean([r["ap"].get(c, np.nan) for r in mine.values()])) for c in classes}
        row["crowd_ap"] = {c: float(np.mean([r["crowd_ap"].get(c, np.nan) for r in mine.values()])) for c in classes}
        shared = sorted(set(mine) & set(base))
        if cell != config["baseline"] and shared:
            row["paired"] = {key: _mean_std([mine[s][key] - base[s][key] for s in shared]) for key in METRICS}
            row["paired"]["seeds"] = shared
        table[cell] = row
    return table


def select_finalists(config: dict, table: dict) -> list[str]:
    """The baseline plus the configured finalists, or, for each loss spec in ``finalist_specs``
    (default: every spec but the baseline's), its ``num_finalists`` best cells by crowd mAP (or the
    config's ``select_by`` metric) among those whose mAP is within one standard deviation of the
    baseline's (or above). Finalists are chosen per spec because each spec's defaults (its terms'
    options) are chosen from them. Cells named in ``references`` (e.g. the pretrained weights) are
    always finalists; so are those in ``extra_finalists``, added after the rule (the config says why)."""
    baseline = config["baseline"]
    chosen = config.get("finalists", "auto")
    if chosen != "auto":
        return [baseline] + [c for c in chosen if c != baseline]
    floor = table[baseline]["map"]["mean"] - table[baseline]["map"]["std"]
    specs = config.get("finalist_specs") or list(dict.fromkeys(
        row["loss"] for cell, row in table.items() if row["loss"] != table[baseline]["loss"]))
    finalists = [baseline] + [c for c in config.get("references", []) if c != baseline]
    for spec in specs:
        eligible = [c for c in table if c != baseline and table[c]["loss"] == spec and table[c]["map"]["mean"] >= floor]
        eligible.sort(key=lambda c: table[c][config.get("select_by", "crowd_map")]["mean"], reverse=True)
        finalists += eligible[:config.get("num_finalists", 1)]
    unknown = [c for c in config.get("extra_finalists", []) if c not in table]
    if unknown:
        raise ValueError(f"extra_finalists: {', '.join(unknown)} not among the selection's cells")
    return list(dict.fromkeys(finalists + list(config.get("extra_finalists", []))))


ERROR_COUNTS = ("fp", "crowd", "missed", "suppressed_neighbour")  # bootstrapped per image, at score >= 0.5
ERROR_NAMES = {"fp": "false positives at score >= 0.5", "crowd": "crowd errors", "missed": "missed people",
               "suppressed_neighbour": "suppressed by NMS under a neighbour"}


def compare_final(config: dict, out: Path, cells: list[str], seeds: list[int], split: str,
                  load_outcomes: Callable, load_counts: Callable | None = None) -> dict:
    """Paired bootstrap over the test images of each cell against the baseline (same seeds): mAP,
    crowd mAP and, where ``load_counts(out, cell, seed, split)`` finds the runs' per-image error
    counts (None where it does not), the error counts of :data:`ERROR_COUNTS` under ``"errors"``."""
    baseline, comparisons = config["baseline"], {}
    if baseline not in cells:
        return comparisons
    samples = int(config.get("bootstrap_samples", 1000))
    base = [load_outcomes(out, baseline, s, split) for s in seeds]
    base_counts = [load_counts(out, baseline, s, split) for s in seeds] if load_counts else [None]
    for cell in cells:
        if cell == baseline:
            continue
        mine = [load_outcomes(out, cell, s, split) for s in seeds]
        comparisons[cell] = {key: paired_bootstrap([m[kind] for m in mine], [b[kind] for b in base], samples,
                                                   metric=metric)
                             for key, kind, metric in (("map", "all", "map"), ("crowd_map", "crowd", "map"),
                                                       ("person_mr", "all", "mr"))}
        counts = [load_counts(out, cell, s, split) for s in seeds] if load_counts else [None]
        if all(c is not None for c in counts + base_counts):
            comparisons[cell]["errors"] = {key: paired_count_bootstrap([c[key] for c in counts],
                                                                       [c[key] for c in base_counts], samples)
                                           for key in ERROR_COUNTS}
    return comparisons


def _cell(stat: dict) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _diff(stat: dict) -> str:
    return f"{stat['mean']:+.4f} ± {stat['std']:.4f}"


def _stage_table(stage: dict, baseline: str) -> list[str]:
    lines = ["| cell | loss | options | mAP | crowd mAP | person AP | person MR^-2 | Δ mAP (paired) "
             "| Δ crowd mAP (paired) | seeds |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cell, row in stage["table"].items():
        options = ", ".join(str(row[k]) if k != "loss_warmup" else f"warmup {row[k]}"
                            for k in ("loss_options", "loss_weights", "loss_warmup") if row.get(k))
        if row.get("ignore_regions") is False:
            options = ", ".join(filter(None, [options, "no ignore regions"]))
        other = ", ".join(k if v is True else f"{k} {v}" for k, v in row.get("other", {}).items())
        options = ", ".join(filter(None, [options, other]))
        paired = row.get("paired")
        deltas = [_diff(paired[k]) if paired else "—" for k in ("map", "crowd_map")]
        lines.append(f"| {cell}{' (baseline)' if cell == baseline else ''} | {row['loss']} | {options or '—'} | "
                     + " | ".join(_cell(row[k]) for k in METRICS) + f" | {' | '.join(deltas)} | {len(row['seeds'])} |")
    return lines


def _errors_table(stage: dict, row_name: str) -> list[str]:
    """Mean over seeds of the error decomposition at one threshold (repssd.eval.errors), per cell."""
    runs = [r for r in stage["runs"] if row_name in r.get("errors", {})]
    if not runs:
        return []
    fp_names = list(runs[0]["errors"][row_name]["fp_by_category"])
    miss_names = list(runs[0]["errors"][row_name]["misses_by_cause"])
    lines = [f"Errors at {row_name} (mean over seeds; false positives by kind, missed people by cause):", "",
             "| cell | score thr. | TP | FP | " + " | ".join(fp_names) + " | missed | " + " | ".join(miss_names) + " |",
             "|" + " --- |" * (5 + len(fp_names) + len(miss_names))]
    for cell in stage["table"]:
        mine = [r["errors"][row_name] for r in runs if r["cell"] == cell]
        if not mine:
            continue
        mean = lambda get: float(np.mean([get(e) for e in mine]))  # noqa: E731
        cells = [f"{mean(lambda e: e['score_threshold']):.3f}", f"{mean(lambda e: e['tp']):.1f}",
                 f"{mean(lambda e: e['fp']):.1f}"]
        cells += [f"{mean(lambda e, n=n: e['fp_by_category'][n]):.1f}" for n in fp_names]
        cells.append(f"{mean(lambda e: e['misses']):.1f}")
        cells += [f"{mean(lambda e, n=n: e['misses_by_cause'][n]):.1f}" for n in miss_names]
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    return lines + [""]


def _nms_table(stage: dict, kind: str = "nms") -> list[str]:
    """mAP / crowd mAP / MR^-2 per NMS threshold (``kind`` "nms") or tile merge ("merge"), mean over
    seeds, per cell."""
    sweeps = stage.get(f"{kind}_sweep") or []
    if not sweeps:
        return []
    values = list(sweeps[0][kind])
    title = {"nms": "NMS threshold", "merge": "Tile merge"}[kind]
    lines = [f"{title} sweep on `{stage['split']}` (mean over seeds: mAP / crowd mAP / MR^-2):", "",
             "| cell | " + " | ".join(f"NMS {t}" if kind == "nms" else str(t) for t in values) + " |",
             "|" + " --- |" * (1 + len(values))]
    for cell in dict.fromkeys(s["cell"] for s in sweeps):
        mine = [s[kind] for s in sweeps if s["cell"] == cell]
        row = [" / ".join(f"{np.nanmean([np.nan if m[t][k] is None else m[t][k] for m in mine]):.3f}"
                          for k in ("map", "crowd_map", "person_mr")) for t in values]
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    return lines + [""]


def markdown(results: dict, title: str) -> str:
    """results.md: one table per stage, the finalists, and the bootstrap intervals."""
    config, lines = results["config"], [f"# {title}", ""]
    baseline = config["baseline"]
    names = {"select": "Selection on the validation split", "final": "Finalists on the test split"}
    for key, stage in results["stages"].items():
        title = names.get(key, f"Finalists on `{stage['split']}`") if "select" in results["stages"] else "Results"
        lines += [f"## {title} (`{stage['split']}`)", ""]
        lines += _stage_table(stage, baseline) + [""]
        if "finalists" in stage:
            lines += [f"Finalists: {', '.join(stage['finalists'])}", ""]
        for row_name in dict.fromkeys(n for r in stage["runs"] for n in r.get("errors", {})):
            lines += _errors_table(stage, row_name)
        lines += _nms_table(stage) + _nms_table(stage, "merge")
        for cell, comp in stage.get("comparisons", {}).items():
            parts = [f"{label} {c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
                     for label, c in (("mAP", comp["map"]), ("crowd mAP", comp["crowd_map"]),
                                      ("MR^-2 (VOC matching)", comp.get("person_mr"))) if c]
            parts += [f"{ERROR_NAMES[k]} {c['b']:.1f} -> {c['a']:.1f}, {c['diff']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"
                      for k, c in comp.get("errors", {}).items()]
            lines.append(f"- {cell} − {baseline}, paired bootstrap over {comp['map']['num_images']} images "
                         f"({comp['map']['num_samples']} resamples, seeds paired), 95% interval: " + "; ".join(parts))
        lines.append("")
    lines.append("(mean ± standard deviation over seeds; Δ: the per-seed difference from the baseline, mean ± std; "
                 "MR^-2: lower is better)")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """ablation.png: mAP and crowd mAP per cell (bars: one standard deviation), one panel a stage."""
    stages = list(results["stages"].items())
    fig, axes = plt.subplots(1, len(stages), figsize=(max(6.0, 0.9 * max(len(s["table"]) for _, s in stages) + 2)
                                                      * len(stages), 4.5), squeeze=False)
    for ax, (key, stage) in zip(axes[0], stages):
        cells = list(stage["table"])
        x = np.arange(len(cells))
        for offset, metric, label in ((-0.2, "map", "mAP"), (0.2, "crowd_map", "crowd mAP")):
            ax.bar(x + offset, [stage["table"][c][metric]["mean"] for c in cells], 0.4,
                   yerr=[stage["table"][c][metric]["std"] for c in cells], label=label, capsize=3)
        ax.set_xticks(x, cells, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="AP (VOC07)", title=f"{key}: {stage['split']} split")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
