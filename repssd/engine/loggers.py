"""Training logs people can watch: JSONL + CSV files, the visdom dashboard, loss and diagnostics PNGs."""
from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["FileLogger", "VisdomLogger", "plot_loss_curves", "plot_diagnostics", "read_log", "visdom_env_name"]


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
    """A run's visdom dashboard, in one env: a curve window per loss term and for the learning
    rate (``train/<name>``), the training engine's diagnostics grouped in three windows (gradient
    norms w.r.t. loc, w.r.t. conf, one trace per loss output; RepGT's IoG statistics), the eval
    metrics (mAP, crowd mAP) at each evaluation, and an image window of detections on fixed test
    images, replaced after each evaluation. Window ids are fixed, so a resumed or repeated run
    appends to its windows instead of opening new ones. An unreachable server is a warning and the
    run goes on without it."""

    WINDOWS = {"grad_loc": "gradient norm w.r.t. loc, per loss output",
               "grad_conf": "gradient norm w.r.t. conf, per loss output",
               "repgt_iog": "RepGT positives: IoG with G_Rep", "eval": "evaluation (test split)"}

    def __init__(self, server: str, port: int, env: str) -> None:
        self.vis = None
        self._windows: set[str] = set()
        try:  # optional (a source package that make install builds; 80 ms to import): only --visdom runs need it
            from visdom import Visdom
        except ImportError:
            warnings.warn("visdom is not installed (make install builds it); training continues without visdom",
                          stacklevel=2)
            return
        try:
            vis = Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
            if not vis.check_connection(timeout_seconds=3):
                raise ConnectionError("no answer")
            self.vis = vis
        except Exception as err:  # visdom raises a variety of connection errors
            warnings.warn(f"visdom server {server}:{port} unreachable ({type(err).__name__}: {err}); "
                          "training continues without visdom", stacklevel=2)

    @staticmethod
    def window_of(name: str) -> tuple[str, str | None]:
        """(window id, trace name) of a logged value: ``grad/<output>/<part>`` -> the ``grad_<part>``
        window, trace ``<output>``; ``diag/<stat>`` -> ``repgt_iog``; anything else its own
        ``train/<name>`` window with one trace."""
        if name.startswith("grad/"):
            _, output, part = name.split("/")
            return f"diagnostics/grad_{part}", output
        if name.startswith("diag/"):
            return "diagnostics/repgt_iog", name.removeprefix("diag/")
        return f"train/{name}", None

    def log(self, iteration: int, values: dict[str, float]) -> None:
        """Training values of one logged step (loss terms, lr, diagnostics)."""
        for name, value in values.items():
            win, trace = self.window_of(name)
            self._point(win, trace, iteration, value, self.WINDOWS.get(win.split("/")[-1], win))

    def log_eval(self, iteration: int, metrics: dict[str, float]) -> None:
        """Eval metrics (``eval/map``, ``eval/crowd_map``), one trace each in the ``eval`` window."""
        for name, value in metrics.items():
            self._point("eval", name.removeprefix("eval/"), iteration, value, self.WINDOWS["eval"])

    def show_detections(self, images: list, caption: str) -> None:
        """``images`` (HxWx3 uint8 RGB, detections drawn) as a grid in the ``detections`` window."""
        if not images:
            return
        height, width = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
        grid = np.zeros((len(images), 3, height, width), dtype=np.uint8)
        for k, image in enumerate(images):
            grid[k, :, :image.shape[0], :image.shape[1]] = image.transpose(2, 0, 1)
        self._send(lambda: self.vis.images(grid, nrow=min(len(images), 4), win="detections",
                                           opts={"title": "detections on fixed test images", "caption": caption}))

    def show_text(self, win: str, html: str, title: str) -> None:
        self._send(lambda: self.vis.text(html, win=win, opts={"title": title}))

    def _point(self, win: str, trace: str | None, iteration: int, value: float, title: str) -> None:
        def send():
            exists = win in self._windows or self.vis.win_exists(win)
            self.vis.line(X=[iteration], Y=[value], win=win, name=trace, update="append" if exists else None,
                          opts={"title": title, "xlabel": "iteration", "showlegend": trace is not None})
            self._windows.add(win)
        self._send(send)

    def _send(self, call) -> None:
        if self.vis is None:
            return
        try:
            call()
        except Exception as err:
            warnings.warn(f"visdom stopped answering ({type(err).__name__}); training continues without it",
                          stacklevel=3)
            self.vis = None


def visdom_env_name(output_dir: str | Path) -> str:
    """The default visdom env of a run: its output folder, as a name visdom can store
    (``runs/demo`` -> ``runs_demo``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(output_dir).as_posix()).strip("_.")
    return name or "repssd"


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
