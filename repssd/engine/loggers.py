"""Training logs people can watch: JSONL + CSV files, visdom curves, a loss-curve PNG."""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["FileLogger", "VisdomLogger", "plot_loss_curves", "plot_diagnostics", "read_log"]


class FileLogger:
    """Appends one JSON object per logged step to ``log.jsonl`` and a row to ``log.csv``."""

    def __init__(self, out_dir: Path, resume: bool) -> None:
        self.jsonl, self.csv = out_dir / "log.jsonl", out_dir / "log.csv"
        if not resume:
            for path in (self.jsonl, self.csv):
                path.unlink(missing_ok=True)
        self._columns: list[str] | None = None

    def log(self, record: dict) -> None:
        with self.jsonl.open("a") as file:
            file.write(json.dumps(record) + "\n")
        if "iter" not in record or any(k.startswith("eval/") for k in record):
            return
        columns = list(record)
        new = not self.csv.exists() or self.csv.stat().st_size == 0
        with self.csv.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self._columns or columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            self._columns = self._columns or columns
            writer.writerow(record)


class VisdomLogger:
    """One visdom line plot per loss term (and per eval metric); an unreachable server is a
    warning and the run goes on without it."""

    def __init__(self, server: str, port: int, env: str) -> None:
        self.vis = None
        try:
            from visdom import Visdom
            vis = Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
            if not vis.check_connection(timeout_seconds=3):
                raise ConnectionError("no answer")
            self.vis = vis
        except Exception as err:  # visdom raises a variety of connection errors
            warnings.warn(f"visdom server {server}:{port} unreachable ({type(err).__name__}: {err}); "
                          "training continues without visdom", stacklevel=2)

    def log(self, iteration: int, values: dict[str, float], prefix: str = "") -> None:
        if self.vis is None:
            return
        try:
            for name, value in values.items():
                win = f"{prefix}{name}"
                self.vis.line(X=[iteration], Y=[value], win=win, update="append" if self.vis.win_exists(win) else None,
                              opts={"title": win, "xlabel": "iteration"})
        except Exception as err:
            warnings.warn(f"visdom stopped answering ({type(err).__name__}); training continues without it",
                          stacklevel=2)
            self.vis = None


def read_log(jsonl: Path) -> list[dict]:
    """The training steps logged in ``log.jsonl`` (eval records left out)."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.exists() else []
    return [r for r in records if "iter" in r and "loss" in r]


def plot_loss_curves(jsonl: Path, out: Path) -> Path | None:
    """``loss.png``: one curve per logged loss term over iterations (and the learning rate)."""
    steps = read_log(jsonl)
    if not steps:
        return None
    terms = [k for k in steps[-1] if k not in ("iter", "lr", "img_s", "epoch", "skipped") and "/" not in k]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    iters = [r["iter"] for r in steps]
    for term in terms:
        ax.plot(iters, [r.get(term, float("nan")) for r in steps], label=term, linewidth=2 if term == "loss" else 1)
    ax.set(ylabel="loss", title="training loss per term")
    ax.grid(alpha=0.3)
    ax.legend()
    ax_lr.plot(iters, [r.get("lr", float("nan")) for r in steps], color="gray")
    ax_lr.set(xlabel="iteration", ylabel="lr")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_diagnostics(jsonl: Path, out: Path) -> Path | None:
    """``diagnostics.png``: per-output gradient norms w.r.t. loc and conf (log scale) and, with
    RepGT, the IoG of its positives with G_Rep; None when the log has no diagnostics."""
    steps = read_log(jsonl)
    grads = sorted({k for r in steps for k in r if k.startswith("grad/")})
    if not grads:
        return None
    stats = sorted({k for r in steps for k in r if k.startswith("diag/")})
    panels = 3 if stats else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    iters = [r["iter"] for r in steps]
    for ax, part in zip(axes, ("loc", "conf")):
        for key in (k for k in grads if k.endswith("/" + part)):
            name = key.split("/")[1]
            ax.plot(iters, [r.get(key, float("nan")) for r in steps], label=name,
                    linewidth=2 if name == "loss" else 1)
        ax.set(yscale="log", xlabel="iteration", title=f"|d(weighted output)/d {part}|")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if stats:
        for key in stats:
            axes[2].plot(iters, [r.get(key, float("nan")) for r in steps], label=key.removeprefix("diag/"))
        axes[2].set(xlabel="iteration", title="RepGT positives: IoG with G_Rep", ylim=(0, 1))
        axes[2].grid(alpha=0.3)
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
