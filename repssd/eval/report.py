"""Evaluation reports: console table, JSON, Markdown and a precision-recall plot."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["format_table", "write_report"]


def _score(value: float | None, width: int = 7) -> str:
    """A metric, or ``n/a`` where it does not apply (crowd mAP without crowd objects)."""
    return f"{'n/a':>{width}s}" if value is None else f"{value:{width}.4f}"


def _scored(report: dict) -> str:
    """``N of M images scored (K unreadable, left out: a, b, ...)``."""
    bad = report.get("unreadable_images") or []
    names = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
    return (f"{report['num_images']} of {report['num_images'] + len(bad)} images scored"
            + (f" ({len(bad)} unreadable, left out: {names})" if bad else ""))


def format_table(report: dict) -> str:
    """Per-class AP (and crowd AP), then the means and the crowd subset's size."""
    crowd = report.get("crowd")
    head = f"{'class':16s} {'AP':>7s} {'GT':>6s}" + (f" {'crowd AP':>9s} {'crowd GT':>9s}" if crowd else "")
    lines = [head, "-" * len(head)]
    for name, ap in report["ap"].items():
        line = f"{name:16s} {ap:7.4f} {report['npos'][name]:6d}"
        if crowd:
            line += (f" {crowd['ap'][name]:9.4f} {crowd['npos'][name]:9d}" if name in crowd["ap"] else f" {'-':>9s} {0:9d}")
        lines.append(line)
    lines.append("-" * len(head))
    lines.append(f"{'mAP (' + report['metric'] + ')':16s} {report['map']:7.4f}")
    if report.get("unreadable_images"):
        lines.append(f"{'images scored':16s} {_scored(report)}")
    if crowd:
        lines.append(f"{'crowd mAP':16s} {_score(crowd['map'])}   ({crowd['num_boxes']} crowd boxes in "
                     f"{crowd['num_images']} of {report['num_images']} images, same-class IoU > {crowd['crowd_iou']})")
        lines.append(f"{'crowd-image mAP':16s} {_score(crowd['image_level']['map'])}   (all objects of those images)")
    for key, value in report.get("coco", {}).items():
        lines.append(f"{'COCO ' + key:16s} {value:7.4f}")
    if "crowdhuman" in report:
        ch = report["crowdhuman"]
        lines.append(f"{'CrowdHuman':16s} AP {ch['ap']:.4f}  MR^-2 {ch['mr']:.4f}  JI {ch['ji']:.4f}")
    if "citypersons" in report:
        lines.append(f"{'CityPersons MR^-2 (official setups; GT per setup)':s}")
        for name, value in report["citypersons"]["mr"].items():
            lines.append(f"  {name:16s} {_miss_rate(value)}   ({report['citypersons']['npos'][name]} GT)")
        if report["citypersons"].get("note"):
            lines.append(f"  note: {report['citypersons']['note']}")
    return "\n".join(lines)


def _miss_rate(value: float) -> str:
    """A miss rate in percent as the CityPersons leaderboard prints it, or n/a (no GT in the setup)."""
    return f"{'n/a':>7s}" if value is None or value != value else f"{100 * value:6.2f}%"


def _markdown(report: dict) -> str:
    crowd = report.get("crowd")
    rows = ["| class | AP | GT |" + (" crowd AP | crowd GT |" if crowd else ""),
            "| --- | --- | --- |" + (" --- | --- |" if crowd else "")]
    for name, ap in report["ap"].items():
        row = f"| {name} | {ap:.4f} | {report['npos'][name]} |"
        if crowd:
            row += f" {crowd['ap'][name]:.4f} | {crowd['npos'][name]} |" if name in crowd["ap"] else " - | 0 |"
        rows.append(row)
    text = [f"# Evaluation ({report['metric']}, {_scored(report)})", "",
            f"**mAP {report['map']:.4f}**" + (f" · **crowd mAP {_score(crowd['map'], 0)}** ({crowd['num_boxes']} crowd "
                                            f"boxes in {crowd['num_images']} images)" if crowd else ""), "", *rows]
    if "coco" in report:
        text += ["", "| " + " | ".join(report["coco"]) + " |", "|" + " --- |" * len(report["coco"]),
                 "| " + " | ".join(f"{v:.4f}" for v in report["coco"].values()) + " |"]
    if "crowdhuman" in report:
        ch = report["crowdhuman"]
        text += ["", f"CrowdHuman: AP {ch['ap']:.4f}, MR^-2 {ch['mr']:.4f}, JI {ch['ji']:.4f}"]
    if "citypersons" in report:
        cp = report["citypersons"]
        text += ["", "CityPersons MR^-2 (lower is better):", "", "| " + " | ".join(cp["mr"]) + " |",
                 "|" + " --- |" * len(cp["mr"]), "| " + " | ".join(_miss_rate(v).strip() for v in cp["mr"].values()) + " |"]
        text += ["", f"Note: {cp['note']}."] if cp.get("note") else []
    return "\n".join(text) + "\n"


def _plot(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (rec, prec) in report["curves"].items():
        line, = ax.plot(rec, prec, label=f"{name} ({report['ap'][name]:.3f})")
        if "crowd" in report and name in report["crowd"]["curves"]:
            crec, cprec = report["crowd"]["curves"][name]
            ax.plot(crec, cprec, linestyle="--", color=line.get_color(), label=f"{name}, crowd ({report['crowd']['ap'][name]:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"mAP {report['map']:.3f}" + (f", crowd mAP {_score(report['crowd']['map'], 0)}" if "crowd" in report else ""))
    ax.grid(alpha=0.3)
    if report["curves"]:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _jsonable(report: dict) -> dict:
    return {k: _jsonable(v) if isinstance(v, dict) else v for k, v in report.items() if k != "curves"}


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``pr_curve.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "pr_curve.png"}
    paths["json"].write_text(json.dumps(_jsonable(report), indent=1))
    paths["markdown"].write_text(_markdown(report))
    _plot(report, paths["plot"])
    return paths
